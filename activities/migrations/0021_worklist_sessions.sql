-- The worklist page's sign-ins (issue 30): a session is a random id in an HttpOnly cookie; the
-- table keeps only its digest, what it authenticates as (a bearer token from the OIDC
-- provider, or in local mode a demo person's key holder), its CSRF token and its expiry. A
-- sign-in under way keeps its PKCE verifier by the digest of its state, for ten minutes.
CREATE TABLE worklist_sessions (
    id_sha256   text PRIMARY KEY,
    bearer      text,
    key_holder  text,
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK ((bearer IS NULL) <> (key_holder IS NULL))
);
CREATE INDEX worklist_sessions_expiry_idx ON worklist_sessions (expires_at);

CREATE TABLE worklist_signins (
    state_sha256  text PRIMARY KEY,
    code_verifier text NOT NULL,
    nonce         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, DELETE ON worklist_sessions, worklist_signins TO rop_api;
