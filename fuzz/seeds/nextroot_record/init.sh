#!/bin/sh
exec /bin/busybox sh
