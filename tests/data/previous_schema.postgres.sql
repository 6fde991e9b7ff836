--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: assistants; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.assistants (
    id text NOT NULL,
    name text NOT NULL,
    instructions text NOT NULL,
    model text,
    created_at timestamp with time zone NOT NULL
);


--
-- Name: bindings; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.bindings (
    place text NOT NULL,
    assistant_id text NOT NULL
);


--
-- Name: messages; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.messages (
    thread_id text NOT NULL,
    id bigint NOT NULL,
    role text NOT NULL,
    content text NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    external_id text,
    created_at timestamp with time zone NOT NULL,
    CONSTRAINT messages_role_check CHECK ((role = ANY (ARRAY['user'::text, 'assistant'::text])))
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone NOT NULL
);


--
-- Name: threads; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.threads (
    id text NOT NULL,
    assistant_id text NOT NULL,
    chat_completion_model text NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    external_key text,
    created_at timestamp with time zone NOT NULL,
    last_activity timestamp with time zone NOT NULL,
    message_count bigint DEFAULT 0 NOT NULL,
    last_user_id bigint DEFAULT 0 NOT NULL,
    hwm bigint DEFAULT 0 NOT NULL,
    settled bigint DEFAULT 0 NOT NULL,
    last_error text,
    reply_upto bigint,
    reply_ref text,
    lease_owner text,
    lease_until double precision
);


--
-- Data for Name: assistants; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.assistants VALUES ('asst_physics', 'Physics Tutor', 'You are an acclaimed Physics Tutor for a top rated high school in the Bay Area of California, USA.', NULL, '2026-11-29 01:55:03.454626+00');
INSERT INTO public.assistants VALUES ('asst_poet', 'Poet', 'You answer in rhyme.', 'gpt-5-nano', '2026-11-29 01:55:03.455693+00');


--
-- Data for Name: bindings; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.bindings VALUES ('slack:C0CLASS001', 'asst_poet');


--
-- Data for Name: messages; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.messages VALUES ('thread_slack', 1, 'user', 'How did the universe begin?', '{"slack_ts": "1700000000.000100", "slack_user": "U0STUDENT1", "slack_status": "shown"}', '1700000000.000100', '2026-11-29 01:55:03.458719+00');
INSERT INTO public.messages VALUES ('thread_slack', 2, 'assistant', 'With a bang, they say.', '{"answers": "1", "slack_ts": "1700000000.000200"}', NULL, '2026-11-29 01:55:03.463724+00');
INSERT INTO public.messages VALUES ('thread_slack', 3, 'user', 'what models?', '{"slack_ts": "1700000000.000300", "slack_user": "U0STUDENT1"}', '1700000000.000300', '2026-11-29 01:55:03.465236+00');
INSERT INTO public.messages VALUES ('thread_cli', 1, 'user', 'What is light?', '{}', NULL, '2026-11-29 01:55:03.468399+00');


--
-- Data for Name: schema_migrations; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.schema_migrations VALUES (1, 'm001_initial', '2026-11-29 01:55:03.447963+00');
INSERT INTO public.schema_migrations VALUES (2, 'm002_bindings_and_activity', '2026-11-29 01:55:03.450465+00');


--
-- Data for Name: threads; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.threads VALUES ('thread_cli', 'asst_physics', 'gpt-3.5-turbo', '{}', NULL, '2026-11-29 01:55:03.467378+00', '2026-11-29 01:55:03.468399+00', 1, 1, 0, 1, 'The model `gpt-3.5-turbo` is retired or unknown.', NULL, NULL, NULL, NULL);
INSERT INTO public.threads VALUES ('thread_slack', 'asst_poet', 'gpt-5-nano', '{"slack_team": "T0FAKE0001", "slack_channel": "C0CLASS001", "slack_thread_ts": "1700000000.000100"}', 'slack:C0CLASS001:1700000000.000100', '2026-11-29 01:55:03.457451+00', '2026-11-29 01:55:03.465236+00', 3, 3, 1, 1, NULL, 3, 'stream:1700000000.000400', NULL, NULL);
INSERT INTO public.threads VALUES ('thread_empty', 'asst_physics', 'gpt-5-mini', '{}', NULL, '2026-11-29 01:55:03.47135+00', '2026-11-29 01:55:03.47135+00', 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL);


--
-- Name: assistants assistants_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.assistants
    ADD CONSTRAINT assistants_pkey PRIMARY KEY (id);


--
-- Name: bindings bindings_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.bindings
    ADD CONSTRAINT bindings_pkey PRIMARY KEY (place);


--
-- Name: messages messages_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (thread_id, id);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: threads threads_external_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.threads
    ADD CONSTRAINT threads_external_key_key UNIQUE (external_key);


--
-- Name: threads threads_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.threads
    ADD CONSTRAINT threads_pkey PRIMARY KEY (id);


--
-- Name: messages_external; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX messages_external ON public.messages USING btree (thread_id, external_id) WHERE (external_id IS NOT NULL);


--
-- Name: threads_activity; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX threads_activity ON public.threads USING btree (last_activity);


--
-- Name: threads_leased; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX threads_leased ON public.threads USING btree (lease_owner) WHERE (lease_owner IS NOT NULL);


--
-- Name: threads_newest; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX threads_newest ON public.threads USING btree (created_at);


--
-- Name: threads_pending; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX threads_pending ON public.threads USING btree (last_activity) WHERE (last_user_id > settled);


--
-- Name: bindings bindings_assistant_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.bindings
    ADD CONSTRAINT bindings_assistant_id_fkey FOREIGN KEY (assistant_id) REFERENCES public.assistants(id);


--
-- Name: messages messages_thread_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.messages
    ADD CONSTRAINT messages_thread_id_fkey FOREIGN KEY (thread_id) REFERENCES public.threads(id);


--
-- Name: threads threads_assistant_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.threads
    ADD CONSTRAINT threads_assistant_id_fkey FOREIGN KEY (assistant_id) REFERENCES public.assistants(id);


--
-- PostgreSQL database dump complete
--


