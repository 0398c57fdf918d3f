#!/bin/bash
# Run once by the postgres image when it creates the database: lets a standby (the HA
# profile's postgres-standby) stream the WAL, with the same password as every client.
set -euo pipefail
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
