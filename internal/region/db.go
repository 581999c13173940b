package region

import (
	"context"
	"net/http"
)

// dbExtras holds the database tier's operator state beyond the cluster:
// backups and their scheduler. db.go owns it.
type dbExtras struct{}

// archiveCommand is the WAL archive command every node runs (pgBackRest);
// "" turns archiving off.
func (r *Region) archiveCommand() string { return "" }

// startBackups starts scheduled backups once the database is up.
func (r *Region) startBackups(ctx context.Context) error { return nil }

func (r *Region) stopBackups(ctx context.Context) error { return nil }

// routesDB adds the database routes of the daemon API.
func (r *Region) routesDB(mux *http.ServeMux) {}
