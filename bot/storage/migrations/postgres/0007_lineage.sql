-- PostgreSQL's twin of ../0007_lineage.sql. The parent lookup is on the very expression the repository queries
-- (bot/storage/sql.py, Dialect.json_text), so the planner can use it.
CREATE INDEX jobs_delivery_message ON jobs (delivery_message_id) WHERE delivery_message_id IS NOT NULL;
CREATE INDEX jobs_card_message ON jobs (card_message_id) WHERE card_message_id IS NOT NULL;
CREATE INDEX jobs_parent ON jobs (((request_json)::json #>> '{context,parent}'));
