-- Batches (variations delivered together), images (e.g. a spectrogram), and Cog callbacks.
ALTER TABLE jobs ADD COLUMN batch_id TEXT;
ALTER TABLE jobs ADD COLUMN batch_index INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN batch_size INTEGER NOT NULL DEFAULT 1;
-- A second output file shown with the audio (riffusion's spectrogram).
ALTER TABLE jobs ADD COLUMN image_path TEXT;
-- An unguessable token in the webhook path, for providers that don't sign webhooks (Cog).
ALTER TABLE jobs ADD COLUMN callback_token TEXT;
-- Files the provider needs as inputs (e.g. a melody clip), as {"input key": "path"}.
ALTER TABLE jobs ADD COLUMN input_files_json TEXT NOT NULL DEFAULT '{}';

CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;
