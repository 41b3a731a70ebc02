"""The central server: inventory of sensors, collection over rsync/SSH, status checks."""
