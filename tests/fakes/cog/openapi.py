"""The OpenAPI document a cog server publishes at ``/openapi.json``, for one model."""

from __future__ import annotations

from typing import Any

from tests.fakes.models import FakeModel

from .validation import EVENTS


def openapi_document(model: FakeModel) -> dict[str, Any]:
    """An OpenAPI 3.0.2 document shaped like cog's (Input/Output from the model)."""
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    status_values = ["starting", "processing", "succeeded", "canceled", "failed"]
    schemas: dict[str, Any] = {
        "Input": {"title": "Input", **model.input_schema},
        "Output": {**model.output_schema, "title": "Output"},
        "Status": {"title": "Status", "description": "An enumeration.", "enum": status_values, "type": "string"},
        "WebhookEvent": {
            "title": "WebhookEvent",
            "description": "An enumeration.",
            "enum": list(EVENTS),
            "type": "string",
        },
        "PredictionRequest": {
            "title": "PredictionRequest",
            "type": "object",
            "properties": {
                "input": ref("Input"),
                "id": {"title": "Id", "type": "string"},
                "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
                "output_file_prefix": {"title": "Output File Prefix", "type": "string"},
                "webhook": {
                    "title": "Webhook",
                    "maxLength": 65536,
                    "minLength": 1,
                    "type": "string",
                    "format": "uri",
                },
                "webhook_events_filter": {
                    "type": "array",
                    "items": ref("WebhookEvent"),
                    "default": list(EVENTS),
                },
            },
        },
        "PredictionResponse": {
            "title": "PredictionResponse",
            "type": "object",
            "properties": {
                "input": ref("Input"),
                "output": ref("Output"),
                "id": {"title": "Id", "type": "string"},
                "version": {"title": "Version", "type": "string"},
                "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
                "started_at": {"title": "Started At", "type": "string", "format": "date-time"},
                "completed_at": {"title": "Completed At", "type": "string", "format": "date-time"},
                "logs": {"title": "Logs", "type": "string", "default": ""},
                "error": {"title": "Error", "type": "string"},
                "status": ref("Status"),
                "metrics": {"title": "Metrics", "type": "object"},
            },
        },
        "ValidationError": {
            "title": "ValidationError",
            "required": ["loc", "msg", "type"],
            "type": "object",
            "properties": {
                "loc": {
                    "title": "Location",
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "msg": {"title": "Message", "type": "string"},
                "type": {"title": "Error Type", "type": "string"},
            },
        },
        "HTTPValidationError": {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {"detail": {"title": "Detail", "type": "array", "items": ref("ValidationError")}},
        },
    }

    def ok(schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": "Successful Response", "content": {"application/json": {"schema": schema}}}

    invalid = {
        "description": "Validation Error",
        "content": {"application/json": {"schema": ref("HTTPValidationError")}},
    }
    prefer = {"required": False, "schema": {"title": "Prefer", "type": "string"}, "name": "prefer", "in": "header"}
    pid = {
        "required": True,
        "schema": {"title": "Prediction ID", "type": "string"},
        "name": "prediction_id",
        "in": "path",
    }
    body = {"content": {"application/json": {"schema": ref("PredictionRequest")}}}
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {
            "/": {"get": {"summary": "Root", "operationId": "root__get", "responses": {"200": ok({})}}},
            "/health-check": {
                "get": {
                    "summary": "Healthcheck",
                    "operationId": "healthcheck_health_check_get",
                    "responses": {"200": ok({})},
                }
            },
            "/predictions": {
                "post": {
                    "summary": "Predict",
                    "description": "Run a single prediction on the model",
                    "operationId": "predict_predictions_post",
                    "parameters": [prefer],
                    "requestBody": body,
                    "responses": {"200": ok(ref("PredictionResponse")), "422": invalid},
                }
            },
            "/predictions/{prediction_id}": {
                "put": {
                    "summary": "Predict Idempotent",
                    "description": "Run a single prediction on the model (idempotent creation).",
                    "operationId": "predict_idempotent_predictions__prediction_id__put",
                    "parameters": [pid, prefer],
                    "requestBody": {**body, "required": True},
                    "responses": {"200": ok(ref("PredictionResponse")), "422": invalid},
                }
            },
            "/predictions/{prediction_id}/cancel": {
                "post": {
                    "summary": "Cancel",
                    "description": "Cancel a running prediction",
                    "operationId": "cancel_predictions__prediction_id__cancel_post",
                    "parameters": [pid],
                    "responses": {"200": ok({}), "422": invalid},
                }
            },
            "/shutdown": {
                "post": {
                    "summary": "Start Shutdown",
                    "operationId": "start_shutdown_shutdown_post",
                    "responses": {"200": ok({})},
                }
            },
        },
        "components": {"schemas": schemas},
    }
