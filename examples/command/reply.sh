#!/bin/sh
# The seed's loop in shell, as a `strategy = command` backend.
while IFS= read -r line; do
    printf 'reply: %s\n' "$line"
done
