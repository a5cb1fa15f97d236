-- A replica's lease keeper asks "which of my leases are wanted / due for renewal" several times a second
-- (`leases::wanted`, `leases::renew_all`); the table keeps one row per stream ever leased, so without this index
-- each of those queries scanned all of them.
CREATE INDEX leases_owner ON leases (owner, expires_at);
