-- PostgreSQL's twin of ../0006_card_final.sql.
ALTER TABLE jobs ADD COLUMN card_final_at double precision;
UPDATE jobs SET card_final_at = updated_at WHERE status IN ('delivered', 'failed', 'canceled');
