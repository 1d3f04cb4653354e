#!/bin/sh
# Run once by the postgres image at its first start (/docker-entrypoint-initdb.d), as the
# superuser: Temporal's two databases, and the records' database owned by the schema owner
# rop_owner, whose password is the secret rop-owner-password. Temporal's schema is then set up
# by Temporal's own admin tools (temporal-schema); the records' by `rop db migrate`
# (rop-migrate, as rop_owner), and the services' logins by `rop db login` (rop-logins).
# (ROP_OWNER_PASSWORD_FILE names another file, as `make image-check` runs it on its own server.)
set -eu
owner_password="$(cat "${ROP_OWNER_PASSWORD_FILE:-/run/secrets/rop-owner-password}")"
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
     --set owner_password="$owner_password" <<'SQL'
CREATE DATABASE temporal;
CREATE DATABASE temporal_visibility;
CREATE ROLE rop_owner LOGIN CREATEROLE PASSWORD :'owner_password';
CREATE DATABASE rop OWNER rop_owner;
SQL
psql -v ON_ERROR_STOP=1 --username postgres --dbname rop \
     -c 'ALTER SCHEMA public OWNER TO rop_owner'
