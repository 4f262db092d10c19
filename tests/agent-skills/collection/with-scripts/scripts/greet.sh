#!/bin/sh
# Prints a greeting, and where it ran from.
echo "Hello, ${1:-world}, from $(dirname "$0")"
