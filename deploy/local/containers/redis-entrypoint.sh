#!/bin/sh
# Entry point of the Redis stand-in image, as the official redis image's: options alone
# mean redis-server; redis-server without a config file accepts other containers
# (protected mode off: the container's network is the boundary) and keeps files in /data.
set -eu
if [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
    shift
    exec redis-server "$@" --protected-mode no --dir /data
fi
exec "$@"
