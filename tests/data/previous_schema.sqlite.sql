BEGIN TRANSACTION;
CREATE TABLE assistants (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            instructions TEXT NOT NULL,
            model TEXT,
            created_at TEXT NOT NULL);
INSERT INTO "assistants" VALUES('asst_physics','Physics Tutor','You are an acclaimed Physics Tutor for a top rated high school in the Bay Area of California, USA.',NULL,'2026-11-29T01:55:02.976381+00:00');
INSERT INTO "assistants" VALUES('asst_poet','Poet','You answer in rhyme.','gpt-5-nano','2026-11-29T01:55:02.976696+00:00');
CREATE TABLE bindings (
            place TEXT PRIMARY KEY,
            assistant_id TEXT NOT NULL REFERENCES assistants(id));
INSERT INTO "bindings" VALUES('slack:C0CLASS001','asst_poet');
CREATE TABLE messages (
            thread_id TEXT NOT NULL REFERENCES threads(id),
            id INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            external_id TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (thread_id, id));
INSERT INTO "messages" VALUES('thread_slack',1,'user','How did the universe begin?','{"slack_user": "U0STUDENT1", "slack_ts": "1700000000.000100", "slack_status": "shown"}','1700000000.000100','2026-11-29T01:55:02.979829+00:00');
INSERT INTO "messages" VALUES('thread_slack',2,'assistant','With a bang, they say.','{"slack_ts": "1700000000.000200", "answers": "1"}',NULL,'2026-11-29T01:55:02.985305+00:00');
INSERT INTO "messages" VALUES('thread_slack',3,'user','what models?','{"slack_user": "U0STUDENT1", "slack_ts": "1700000000.000300"}','1700000000.000300','2026-11-29T01:55:02.985604+00:00');
INSERT INTO "messages" VALUES('thread_cli',1,'user','What is light?','{}',NULL,'2026-11-29T01:55:02.987907+00:00');
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);
INSERT INTO "schema_migrations" VALUES(1,'m001_initial','2026-11-29T01:55:02.974008+00:00');
INSERT INTO "schema_migrations" VALUES(2,'m002_bindings_and_activity','2026-11-29T01:55:02.974139+00:00');
CREATE TABLE threads (
            id TEXT PRIMARY KEY,
            assistant_id TEXT NOT NULL REFERENCES assistants(id),
            chat_completion_model TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            external_key TEXT UNIQUE,
            created_at TEXT NOT NULL,
            last_activity TEXT NOT NULL,
            message_count INTEGER NOT NULL DEFAULT 0,
            last_user_id INTEGER NOT NULL DEFAULT 0,
            hwm INTEGER NOT NULL DEFAULT 0,
            settled INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            reply_upto INTEGER,
            reply_ref TEXT,
            lease_owner TEXT,
            lease_until REAL);
INSERT INTO "threads" VALUES('thread_slack','asst_poet','gpt-5-nano','{"slack_team": "T0FAKE0001", "slack_channel": "C0CLASS001", "slack_thread_ts": "1700000000.000100"}','slack:C0CLASS001:1700000000.000100','2026-11-29T01:55:02.978534+00:00','2026-11-29T01:55:02.985604+00:00',3,3,1,1,NULL,3,'stream:1700000000.000400',NULL,NULL);
INSERT INTO "threads" VALUES('thread_cli','asst_physics','gpt-3.5-turbo','{}',NULL,'2026-11-29T01:55:02.987368+00:00','2026-11-29T01:55:02.987907+00:00',1,1,0,1,'The model `gpt-3.5-turbo` is retired or unknown.',NULL,NULL,NULL,NULL);
INSERT INTO "threads" VALUES('thread_empty','asst_physics','gpt-5-mini','{}',NULL,'2026-11-29T01:55:02.992073+00:00','2026-11-29T01:55:02.992073+00:00',0,0,0,0,NULL,NULL,NULL,NULL,NULL);
CREATE INDEX threads_newest ON threads(created_at);
CREATE INDEX threads_pending ON threads(last_activity) WHERE last_user_id > settled;
CREATE INDEX threads_leased ON threads(lease_owner) WHERE lease_owner IS NOT NULL;
CREATE UNIQUE INDEX messages_external ON messages(thread_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX threads_activity ON threads(last_activity);
COMMIT;
