#!/bin/bash
# The HA profile's standby: on its first start it copies the primary (`postgres`) with
# pg_basebackup -R and names itself standby1 (the name WAREHOUSE_SYNC_STANDBY makes
# synchronous); then it runs as a hot standby. Promote it with
#   docker compose exec -u postgres postgres-standby pg_ctl promote -D /var/lib/postgresql/data
set -euo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
export PGPASSWORD="${POSTGRES_PASSWORD:-postgres}"
mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"
until pg_isready -h postgres -U postgres -q; do sleep 1; done
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	gosu postgres pg_basebackup -h postgres -U postgres -D "$PGDATA" -R -X stream -c fast
	echo "primary_conninfo = 'host=postgres user=postgres password=$PGPASSWORD application_name=standby1'" \
		>> "$PGDATA/postgresql.auto.conf"
fi
exec gosu postgres postgres
