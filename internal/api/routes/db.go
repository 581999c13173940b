package routes

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/backup"
	"github.com/haven-platform/haven/internal/pgha"
)

// DB is what the database routes need of the database tier (*pgha.Cluster).
type DB interface {
	Status() pgha.Status
	Replication(ctx context.Context) (pgha.Replication, error)
	Switchover(ctx context.Context, toZone string) error
	EnsureWorkRole(ctx context.Context, database, role, password string) error
	ClearPassword(ctx context.Context, role string) error
}

// Backups is what they need of the backup tier (*backup.Manager).
type Backups interface {
	Stanza() string
	ArchiveStatus() backup.ArchiveStatus
	Backup(ctx context.Context, kind backup.Kind, onProgress func(backup.Progress)) (backup.BackupInfo, error)
	List(ctx context.Context) (backup.Listing, error)
}

// DBInfo is the database's settings, from the spec.
type DBInfo struct {
	// Endpoint is the database endpoint's host address now (an apply
	// moves it).
	Endpoint                      func() string
	AppUser, AppDatabase, AppAuth string
	MultiAZ                       bool
	// Repo is the backup repository; BackupLog where pgBackRest logs.
	Repo, BackupLog string
}

// DBTiers gives the routes the database tiers running now.
type DBTiers interface {
	// DB is the database tier, nil before it runs.
	DB() DB
	// Backups is the backup tier and its restored servers; nil with why
	// when backups are off or not started.
	Backups() (b Backups, restores *backup.Restores, why string)
}

// DBRoutes adds the database and backup routes.
func DBRoutes(mux *http.ServeMux, info DBInfo, t DBTiers, ev Events) {
	db := func(w http.ResponseWriter) DB {
		d := t.DB()
		if d == nil {
			replyErr(w, 0, unavailable("the database is not running (yet): `haven status` shows the region's phase"))
		}
		return d
	}
	backups := func(w http.ResponseWriter) (Backups, *backup.Restores) {
		b, rs, why := t.Backups()
		if b == nil {
			if why == "" {
				why = "the region has not started them yet"
			}
			replyErr(w, 0, unavailable("backups are off: "+why))
		}
		return b, rs
	}
	mux.HandleFunc("GET /v1/db/status", func(w http.ResponseWriter, req *http.Request) {
		if d := db(w); d != nil {
			reply(w, http.StatusOK, dbStatus(req.Context(), info, d, t))
		}
	})
	mux.HandleFunc("POST /v1/db/switchover", func(w http.ResponseWriter, req *http.Request) {
		var in api.DBSwitchoverRequest
		d := db(w)
		if d == nil || !decode(w, req, &in) {
			return
		}
		out, err := switchover(req.Context(), d, in, ev)
		if err != nil {
			replyErr(w, http.StatusConflict, err)
			return
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/db/backups", func(w http.ResponseWriter, req *http.Request) {
		var in api.DBBackupRequest
		if db(w) == nil || !decode(w, req, &in) {
			return
		}
		m, _ := backups(w)
		if m == nil {
			return
		}
		kind := backup.Kind(in.Type)
		switch kind {
		case "":
			kind = backup.Full
		case backup.Full, backup.Incremental, backup.Differential:
		default:
			replyErr(w, http.StatusBadRequest, fmt.Errorf("backup type %q: must be full, incr or diff", in.Type))
			return
		}
		b, err := m.Backup(req.Context(), kind, nil)
		if err != nil {
			replyErr(w, http.StatusInternalServerError, fmt.Errorf("%w; pgBackRest's log is in %s", err, info.BackupLog))
			return
		}
		reply(w, http.StatusOK, apiBackup(b))
	})
	mux.HandleFunc("GET /v1/db/backups", func(w http.ResponseWriter, req *http.Request) {
		if db(w) == nil {
			return
		}
		m, _ := backups(w)
		if m == nil {
			return
		}
		// Right after a failover the newest archived segment named by the
		// repository can be missing for a moment (List reads it to find the
		// latest restorable time): retry briefly before giving up.
		l, err := m.List(req.Context())
		for i := 0; err != nil && i < 5 && req.Context().Err() == nil; i++ {
			time.Sleep(time.Second)
			l, err = m.List(req.Context())
		}
		if err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		out := api.DBBackupList{EarliestRestorable: l.EarliestRestorable, LatestRestorable: l.LatestRestorable, WALMin: l.WALMin, WALMax: l.WALMax,
			WALChainEnd: l.ChainEnd, WALChainProblem: l.ChainProblem, Backups: []api.DBBackup{}}
		for _, b := range l.Backups {
			out.Backups = append(out.Backups, apiBackup(b))
		}
		if !l.LatestRestorable.IsZero() {
			out.LatestRestorableLagSeconds = time.Since(l.LatestRestorable).Seconds()
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/db/restore", func(w http.ResponseWriter, req *http.Request) {
		var in api.DBRestoreRequest
		if db(w) == nil || !decode(w, req, &in) {
			return
		}
		_, rs := backups(w)
		if rs == nil {
			return
		}
		if in.ToTime.IsZero() {
			replyErr(w, http.StatusBadRequest, errors.New("restore: to_time is required"))
			return
		}
		ev.Add("db", "restore-start", "", "restoring to "+in.ToTime.UTC().Format(time.RFC3339Nano))
		run, err := rs.Start(req.Context(), in.ToTime, in.Port)
		if err != nil {
			ev.Add("db", "restore-failed", "", err.Error())
			code := http.StatusInternalServerError
			if errors.Is(err, backup.ErrNoBackup) || errors.Is(err, backup.ErrBeforeFirstBackup) || errors.Is(err, backup.ErrAfterLatestRestorable) {
				code = http.StatusConflict
			}
			replyErr(w, code, err)
			return
		}
		out := apiRestore(run, info)
		ev.Add("db", "restore-done", run.ID, "restored server at "+out.Address+" (stop it with `haven db restore-stop "+run.ID+"`)")
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/db/restores", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, restoreList(t, info))
	})
	mux.HandleFunc("DELETE /v1/db/restores/{id}", func(w http.ResponseWriter, req *http.Request) {
		_, rs, _ := t.Backups()
		if rs == nil {
			replyErr(w, http.StatusNotFound, fmt.Errorf("restored server %q: not running; `haven db restores` lists them", req.PathValue("id")))
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), 15*time.Second)
		defer cancel()
		run, err := rs.Stop(ctx, req.PathValue("id"))
		if errors.Is(err, backup.ErrUnknownRestore) {
			replyErr(w, http.StatusNotFound, fmt.Errorf("%w; `haven db restores` lists them", err))
			return
		}
		if err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		ev.Add("db", "restore-stopped", run.ID, "restored server stopped; data kept in "+run.Server.DataDir)
		reply(w, http.StatusOK, map[string]string{"status": "stopped", "data_dir": run.Server.DataDir})
	})
	mux.HandleFunc("POST /v1/db/drill-login", func(w http.ResponseWriter, req *http.Request) {
		d := db(w)
		if d == nil {
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), 15*time.Second)
		defer cancel()
		out := api.DBDrillLogin{User: info.AppUser + "_drill", Database: info.AppDatabase, Endpoint: info.Endpoint(),
			Password: pgha.NewPassword()}
		if err := d.EnsureWorkRole(ctx, info.AppDatabase, out.User, out.Password); err != nil {
			replyErr(w, http.StatusInternalServerError, fmt.Errorf("drill login: %w", err))
			return
		}
		ev.Add("db", "drill-login", out.User, "drill role (re)keyed")
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("DELETE /v1/db/drill-login", func(w http.ResponseWriter, req *http.Request) {
		d := db(w)
		if d == nil {
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), 15*time.Second)
		defer cancel()
		if err := d.ClearPassword(ctx, info.AppUser+"_drill"); err != nil {
			replyErr(w, http.StatusInternalServerError, fmt.Errorf("drill logout: %w", err))
			return
		}
		reply(w, http.StatusOK, map[string]string{"status": "drill password cleared"})
	})
}

func apiBackup(b backup.BackupInfo) api.DBBackup {
	return api.DBBackup{Label: b.Label, Type: string(b.Type), Prior: b.Prior, Start: b.Start, Stop: b.Stop,
		WALStart: b.WALStart, WALStop: b.WALStop, SizeBytes: b.Size, RepoBytes: b.RepoSize}
}

func apiRestore(run *backup.Restored, info DBInfo) api.DBRestore {
	s := run.Server
	return api.DBRestore{
		ID: run.ID, Target: s.Target, Backup: s.Backup,
		Address: netip.AddrPortFrom(s.ListenAddr, uint16(s.Port)).String(),
		DSN:     s.DSN(info.AppUser, info.AppDatabase),
		DataDir: s.DataDir, LogFile: s.LogFile, PID: s.Pid(), LastReplayed: s.LastReplayed,
		TookMS: float64(run.Took.Milliseconds()),
	}
}

func restoreList(t DBTiers, info DBInfo) []api.DBRestore {
	out := []api.DBRestore{}
	if _, rs, _ := t.Backups(); rs != nil {
		for _, run := range rs.List() {
			out = append(out, apiRestore(run, info))
		}
	}
	return out
}

// dbStatus is the detailed view of the database tier.
func dbStatus(ctx context.Context, info DBInfo, d DB, t DBTiers) api.DBStatus {
	ds := d.Status()
	out := api.DBStatus{
		Endpoint: info.Endpoint(), AppUser: info.AppUser, AppDatabase: info.AppDatabase, AppAuth: info.AppAuth,
		MultiAZ: info.MultiAZ, Durability: string(ds.State.Durability),
		Epoch: int64(ds.State.Epoch), EndpointEpoch: int64(ds.EndpointEpoch),
		Primary: ds.State.Primary, Standby: ds.State.Standby,
		StandbyEligible: ds.State.StandbyEligible, SyncEnabled: ds.State.SyncEnabled,
		SyncState: "none", ReplicationState: "none", LastPlan: ds.LastPlan, LastError: ds.LastError,
	}
	for _, n := range ds.Nodes {
		out.Nodes = append(out.Nodes, api.DBNodeStatus{Name: n.Name, Zone: n.Zone, Address: n.Addr, Role: n.Role, Health: n.Health, PID: n.Pid, InRecovery: n.InRecovery})
		switch n.Name {
		case ds.State.Primary:
			out.PrimaryZone = n.Zone
		case ds.State.Standby:
			out.StandbyZone = n.Zone
		}
	}
	if rep, err := d.Replication(ctx); err == nil {
		out.ReplicationState, out.SyncState = rep.State, rep.Sync
		out.LagBytes, out.LagSeconds = rep.LagBytes, rep.LagSeconds
	}
	m, _, why := t.Backups()
	if m != nil {
		as := m.ArchiveStatus()
		out.Backups = &api.DBBackupSummary{Enabled: true, Stanza: m.Stanza(), Repo: info.Repo, ArchiveFailing: as.Failing, LastArchived: as.LastArchivedWAL}
	} else {
		out.Backups = &api.DBBackupSummary{Reason: why}
	}
	out.Restores = restoreList(t, info)
	return out
}

// switchover makes the standby (in req.ToZone, default the standby's zone)
// the primary, gracefully.
func switchover(ctx context.Context, d DB, req api.DBSwitchoverRequest, ev Events) (api.DBSwitchoverResult, error) {
	ds := d.Status()
	zone := req.ToZone
	if zone == "" {
		for _, n := range ds.Nodes {
			if n.Name == ds.State.Standby {
				zone = n.Zone
			}
		}
		if zone == "" {
			return api.DBSwitchoverResult{}, errors.New("switchover: the database has no standby (database.multi_az is false)")
		}
	}
	var to string
	for _, n := range ds.Nodes {
		if n.Zone == zone {
			to = n.Name
		}
	}
	res := api.DBSwitchoverResult{FromNode: ds.State.Primary, ToNode: to, ToZone: zone}
	ev.Add("db", "switchover-start", to, fmt.Sprintf("planned switchover %s → %s (zone %s)", ds.State.Primary, to, zone))
	start := time.Now()
	if err := d.Switchover(ctx, zone); err != nil {
		if errors.Is(err, pgha.ErrNotEligible) {
			err = fmt.Errorf("%w; the standby is not synchronous and caught up yet (`haven db status` shows sync_state and standby_eligible): retry when it is", err)
		}
		ev.Add("db", "switchover-failed", to, err.Error())
		return res, err
	}
	res.TookMS = float64(time.Since(start).Microseconds()) / 1000
	res.Epoch = int64(d.Status().State.Epoch)
	return res, nil
}
