#!/bin/sh
# Entry point of the Neo4j stand-in image: our embedded launcher on Debian's Java,
# reading NEO4J_AUTH as the official neo4j image does ("neo4j/<password>" or "none").
set -eu
auth="${NEO4J_AUTH:-none}"
set -- --data /data --host 0.0.0.0 --port 7687
if [ "$auth" != none ]; then
    set -- "$@" --password "${auth#*/}"
fi
exec java "-Xmx${NEO4J_HEAP:-768m}" -XX:+UseSerialGC \
    -cp "/opt/neo4j-local/neo4j-local.jar:/opt/neo4j-local/lib/*" \
    io.cypherstream.local.Neo4jLocal "$@"
