-- When the job card was last edited to show how the job ended (Done, Failed, Canceled); NULL while the card
-- may still be behind. A process that stops between a job's end and that edit leaves it NULL, and the next
-- start edits the card again. Jobs that ended before this column existed are taken as shown.
ALTER TABLE jobs ADD COLUMN card_final_at REAL;
UPDATE jobs SET card_final_at = updated_at WHERE status IN ('delivered', 'failed', 'canceled');
