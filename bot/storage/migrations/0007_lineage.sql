-- Lineage lookups: which job a message of Encore's (a delivered track or a job card) belongs to, for replies
-- and menus that continue it, and which jobs continue a job, for Full track.
CREATE INDEX jobs_delivery_message ON jobs (delivery_message_id) WHERE delivery_message_id IS NOT NULL;
CREATE INDEX jobs_card_message ON jobs (card_message_id) WHERE card_message_id IS NOT NULL;
CREATE INDEX jobs_parent ON jobs (json_extract(request_json, '$.context.parent'));
