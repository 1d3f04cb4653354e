#!/bin/sh
# Make the secret files deploy/compose.yaml reads, with new random passwords and a new
# payload key, each readable only by the container that reads it:
#   postgres-password, rop-owner-password   root:999   0440  (the postgres image's user)
#   payload-keys.json, rop-*.env           root:10001 0440  (the rop image's user)
# Compose bind-mounts file secrets with the host file's owner and mode (its uid/gid/mode
# options do not apply to them), so the files must already be readable by those users.
# Existing files are kept: the script never changes a password a database already has.
#
#   deploy/compose/make-secrets.sh [DIR]      (default: deploy/secrets; run as root)
#
# ROP_SECRETS_DB_HOST (default postgres:5432) and ROP_SECRETS_DB_QUERY (default empty, e.g.
# ?sslmode=require) and ROP_SECRETS_DB_NAME (default rop) say where the logins' DATABASE_URLs point.
set -eu
dir="${1:-$(dirname "$0")/../secrets}"
db_host="${ROP_SECRETS_DB_HOST-postgres:5432}"
db_query="${ROP_SECRETS_DB_QUERY-}"
db_name="${ROP_SECRETS_DB_NAME-rop}"
postgres_gid=999
rop_gid=10001

random() {  # URL-safe, so a password can stand in a DATABASE_URL as it is
    head -c "$1" /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

write() {  # write FILE GROUP, content on stdin, unless FILE exists
    if [ -e "$dir/$1" ]; then
        echo "kept    $dir/$1"
        cat > /dev/null
    else
        (umask 077 && cat > "$dir/$1")
        echo "written $dir/$1"
    fi
    chown "0:$2" "$dir/$1"
    chmod 0440 "$dir/$1"
}

url() {  # url LOGIN PASSWORD
    echo "DATABASE_URL=postgresql://$1:$2@$db_host/$db_name$db_query"
}

mkdir -p "$dir"
chmod 0755 "$dir"
random 24 | write postgres-password "$postgres_gid"
owner_password="$(cat "$dir/rop-owner-password" 2> /dev/null || random 24)"
printf '%s' "$owner_password" | write rop-owner-password "$postgres_gid"
printf '{"current": "k1", "keys": {"k1": "%s"}}\n' "$(head -c 32 /dev/urandom | base64)" \
    | write payload-keys.json "$rop_gid"
url rop_owner "$owner_password" | write rop-owner.env "$rop_gid"
url rop_worker_login "$(random 24)" | write rop-worker.env "$rop_gid"
{
    url rop_api_login "$(random 24)"
    echo "# The API's and codec server's identity provider (deploy/README, \"Who is let in\"):"
    echo "# ROP_API_JWT_JWKS_URL=https://login.example.hospital.no/.well-known/jwks.json"
    echo "# ROP_API_JWT_ISSUER=https://login.example.hospital.no"
    echo "# ROP_API_JWT_AUDIENCE=rop-forlop"
} | write rop-api.env "$rop_gid"
