-- PostgreSQL's twin of ../0002_batches_files_cog.sql.
ALTER TABLE jobs ADD COLUMN batch_id text;
ALTER TABLE jobs ADD COLUMN batch_index integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN batch_size integer NOT NULL DEFAULT 1;
-- A second output file shown with the audio (riffusion's spectrogram).
ALTER TABLE jobs ADD COLUMN image_path text;
-- An unguessable token in the webhook path, for providers that don't sign webhooks (Cog).
ALTER TABLE jobs ADD COLUMN callback_token text;
-- Files the provider needs as inputs (e.g. a melody clip), as {"input key": "path"}.
ALTER TABLE jobs ADD COLUMN input_files_json text NOT NULL DEFAULT '{}';

CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;
