package region

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/backup"
	"github.com/haven-platform/haven/internal/pgha"
)

// dbExtras holds the database tier's operator state beyond the cluster:
// backups and their scheduler. db.go owns it.
type dbExtras struct {
	backups   *backup.Manager // nil when backups are off
	backupOff string          // why backups are off
	started   bool            // backups.Start succeeded

	faultMu sync.Mutex // one fault or switchover at a time

	mu       sync.Mutex
	restores map[string]*restoredDB
}

// restoredDB is a server restored to a point in time, running until
// `haven db restore-stop` or the region stops.
type restoredDB struct {
	info api.DBRestore
	srv  *backup.RestoredServer
}

// archiveCommand is the WAL archive command every node runs (pgBackRest);
// "" turns archiving off. It builds the backup manager, which must exist
// before the database starts.
func (r *Region) archiveCommand(nodes []pgha.Node) string {
	days := int(r.spec.Database.BackupRetention.D() / (24 * time.Hour))
	var err error
	r.dbx.backups, err = backup.New(backup.Config{
		Dir:           filepath.Join(r.pgRoot, "backup"),
		Stanza:        r.spec.Name,
		Nodes:         nodes,
		Primary:       func() pgha.Node { return r.db.Primary() },
		RetentionDays: days,
		Schedule:      backup.Schedule{Full: r.spec.Database.BackupSchedule},
		Logger:        r.opts.Logger,
	})
	if err != nil {
		r.dbx.backups = nil
		r.dbx.backupOff = err.Error()
		r.warn("backups are off: " + err.Error())
		return ""
	}
	return r.dbx.backups.ArchiveCommand()
}

// startBackups starts scheduled backups once the database is up: it
// creates the stanza, then the archive ticker and the scheduler run (the
// first full backup starts at once, in the background).
func (r *Region) startBackups(ctx context.Context) error {
	m := r.dbx.backups
	if m == nil {
		return nil
	}
	if err := m.Start(ctx); err != nil {
		// The region still serves; the status says why backups are off.
		r.dbx.backupOff = "start backups: " + err.Error()
		r.warn("backups are off: " + r.dbx.backupOff + "; see " + filepath.Join(r.pgRoot, "backup", "log"))
		return nil
	}
	r.dbx.started = true
	r.say("backups: pgBackRest stanza %s in %s; WAL archived from every node; full backups %q, retention %s",
		m.Stanza(), filepath.Join(r.pgRoot, "backup", "repo"), r.spec.Database.BackupSchedule, r.spec.Database.BackupRetention)
	return nil
}

func (r *Region) stopBackups(ctx context.Context) error {
	var errs []error
	r.dbx.mu.Lock()
	rs := r.dbx.restores
	r.dbx.restores = nil
	r.dbx.mu.Unlock()
	for _, rd := range rs {
		errs = append(errs, rd.srv.Stop(ctx))
	}
	if r.dbx.backups != nil && r.dbx.started {
		errs = append(errs, r.dbx.backups.Stop(ctx))
	}
	return errors.Join(errs...)
}

// routesDB adds the database routes of the daemon API.
func (r *Region) routesDB(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/db/status", func(w http.ResponseWriter, req *http.Request) {
		if !r.dbUp(w) {
			return
		}
		reply(w, http.StatusOK, r.dbStatus(req.Context()))
	})
	mux.HandleFunc("POST /v1/db/switchover", func(w http.ResponseWriter, req *http.Request) {
		var in api.DBSwitchoverRequest
		if !r.dbUp(w) || !decode(w, req, &in) {
			return
		}
		out, err := r.dbSwitchover(req.Context(), in)
		if err != nil {
			replyErr(w, http.StatusConflict, err)
			return
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/db/backups", func(w http.ResponseWriter, req *http.Request) {
		var in api.DBBackupRequest
		if !r.dbUp(w) || !decode(w, req, &in) || !r.backupsUp(w) {
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
		r.events.Add("db", "backup-start", string(kind), "backup requested")
		b, err := r.dbx.backups.Backup(req.Context(), kind, nil)
		if err != nil {
			replyErr(w, http.StatusInternalServerError, fmt.Errorf("%w; pgBackRest's log is in %s", err, filepath.Join(r.pgRoot, "backup", "log")))
			return
		}
		r.events.Add("db", "backup-done", b.Label, string(b.Type)+" backup done")
		reply(w, http.StatusOK, apiBackup(b))
	})
	mux.HandleFunc("GET /v1/db/backups", func(w http.ResponseWriter, req *http.Request) {
		if !r.dbUp(w) || !r.backupsUp(w) {
			return
		}
		// Right after a failover the newest archived segment named by the
		// repository can be missing for a moment (List reads it to find the
		// latest restorable time): retry briefly before giving up.
		l, err := r.dbx.backups.List(req.Context())
		for i := 0; err != nil && i < 5 && req.Context().Err() == nil; i++ {
			r.log.Warn("list backups failed; retrying", "err", err)
			time.Sleep(time.Second)
			l, err = r.dbx.backups.List(req.Context())
		}
		if err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		out := api.DBBackupList{EarliestRestorable: l.EarliestRestorable, LatestRestorable: l.LatestRestorable, WALMin: l.WALMin, WALMax: l.WALMax, WALChainEnd: l.ChainEnd, WALChainProblem: l.ChainProblem, Backups: []api.DBBackup{}}
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
		if !r.dbUp(w) || !decode(w, req, &in) || !r.backupsUp(w) {
			return
		}
		out, err := r.dbRestore(req.Context(), in)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, backup.ErrNoBackup) || errors.Is(err, backup.ErrBeforeFirstBackup) || errors.Is(err, backup.ErrAfterLatestRestorable) {
				code = http.StatusConflict
			}
			replyErr(w, code, err)
			return
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/db/drill-login", func(w http.ResponseWriter, req *http.Request) {
		if !r.dbUp(w) {
			return
		}
		out, err := r.drillLogin(req.Context())
		if err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("DELETE /v1/db/drill-login", func(w http.ResponseWriter, req *http.Request) {
		if !r.dbUp(w) {
			return
		}
		if err := r.drillLogout(req.Context()); err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		reply(w, http.StatusOK, map[string]string{"status": "drill password cleared"})
	})
	mux.HandleFunc("GET /v1/db/restores", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, r.restoreList())
	})
	mux.HandleFunc("DELETE /v1/db/restores/{id}", func(w http.ResponseWriter, req *http.Request) {
		id := req.PathValue("id")
		r.dbx.mu.Lock()
		rd := r.dbx.restores[id]
		delete(r.dbx.restores, id)
		r.dbx.mu.Unlock()
		if rd == nil {
			replyErr(w, http.StatusNotFound, fmt.Errorf("restored server %q: not running; `haven db restores` lists them", id))
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), 15*time.Second)
		defer cancel()
		if err := rd.srv.Stop(ctx); err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		r.events.Add("db", "restore-stopped", id, "restored server stopped; data kept in "+rd.info.DataDir)
		reply(w, http.StatusOK, map[string]string{"status": "stopped", "data_dir": rd.info.DataDir})
	})
}

func (r *Region) dbUp(w http.ResponseWriter) bool {
	if r.db == nil {
		replyErr(w, http.StatusServiceUnavailable, errors.New("the database is not running (yet): `haven status` shows the region's phase"))
		return false
	}
	return true
}

func (r *Region) backupsUp(w http.ResponseWriter) bool {
	if r.dbx.backups == nil || !r.dbx.started {
		why := r.dbx.backupOff
		if why == "" {
			why = "the region has not started them yet"
		}
		replyErr(w, http.StatusServiceUnavailable, fmt.Errorf("backups are off: %s", why))
		return false
	}
	return true
}

func apiBackup(b backup.BackupInfo) api.DBBackup {
	return api.DBBackup{Label: b.Label, Type: string(b.Type), Prior: b.Prior, Start: b.Start, Stop: b.Stop,
		WALStart: b.WALStart, WALStop: b.WALStop, SizeBytes: b.Size, RepoBytes: b.RepoSize}
}

// dbStatus is the detailed view of the database tier.
func (r *Region) dbStatus(ctx context.Context) api.DBStatus {
	s := r.spec
	ds := r.db.Status()
	out := api.DBStatus{
		Endpoint: s.Database.Endpoint, AppUser: s.Database.User, AppDatabase: s.Database.Name, AppAuth: r.appAuth(),
		MultiAZ: s.Database.MultiAZ, Durability: string(ds.State.Durability),
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
	if rep, err := r.db.Replication(ctx); err == nil {
		out.ReplicationState, out.SyncState = rep.State, rep.Sync
		out.LagBytes, out.LagSeconds = rep.LagBytes, rep.LagSeconds
	}
	if m := r.dbx.backups; m != nil {
		as := m.ArchiveStatus()
		out.Backups = &api.DBBackupSummary{Enabled: r.dbx.started, Reason: r.dbx.backupOff, Stanza: m.Stanza(),
			Repo: filepath.Join(r.pgRoot, "backup", "repo"), ArchiveFailing: as.Failing, LastArchived: as.LastArchivedWAL}
	} else {
		out.Backups = &api.DBBackupSummary{Reason: r.dbx.backupOff}
	}
	out.Restores = r.restoreList()
	return out
}

// dbSwitchover makes the standby (in req.ToZone, default the standby's
// zone) the primary, gracefully.
func (r *Region) dbSwitchover(ctx context.Context, req api.DBSwitchoverRequest) (api.DBSwitchoverResult, error) {
	r.dbx.faultMu.Lock()
	defer r.dbx.faultMu.Unlock()
	ds := r.db.Status()
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
	r.events.Add("db", "switchover-start", to, fmt.Sprintf("planned switchover %s → %s (zone %s)", ds.State.Primary, to, zone))
	start := time.Now()
	if err := r.db.Switchover(ctx, zone); err != nil {
		if errors.Is(err, pgha.ErrNotEligible) {
			err = fmt.Errorf("%w; the standby is not synchronous and caught up yet (`haven db status` shows sync_state and standby_eligible): retry when it is", err)
		}
		r.events.Add("db", "switchover-failed", to, err.Error())
		return res, err
	}
	res.TookMS = float64(time.Since(start).Microseconds()) / 1000
	res.Epoch = int64(r.db.Status().State.Epoch)
	r.events.Add("db", "switchover-done", to, fmt.Sprintf("primary is %s (epoch %d) after %.0f ms", to, res.Epoch, res.TookMS))
	return res, nil
}

// dbRestore restores the repository to req.ToTime into a new server under
// the state dir and leaves it running.
func (r *Region) dbRestore(ctx context.Context, req api.DBRestoreRequest) (api.DBRestore, error) {
	if req.ToTime.IsZero() {
		return api.DBRestore{}, errors.New("restore: to_time is required")
	}
	port := req.Port
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return api.DBRestore{}, fmt.Errorf("restore: pick a port: %w", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	id := "r" + time.Now().UTC().Format("20060102t150405.000")
	base := filepath.Join(r.pgRoot, "restores")
	dir := filepath.Join(base, id)
	for _, d := range []string{base, dir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return api.DBRestore{}, fmt.Errorf("restore: create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return api.DBRestore{}, fmt.Errorf("restore: chmod %s: %w", d, err)
		}
	}
	r.events.Add("db", "restore-start", id, "restoring to "+req.ToTime.UTC().Format(time.RFC3339Nano))
	start := time.Now()
	srv, err := r.dbx.backups.Restore(ctx, backup.RestoreOptions{
		TargetTime: req.ToTime, DataDir: filepath.Join(dir, "data"),
		ListenAddr: netip.MustParseAddr("127.0.0.1"), Port: port,
	})
	if err != nil {
		r.events.Add("db", "restore-failed", id, err.Error())
		return api.DBRestore{}, err
	}
	info := api.DBRestore{
		ID: id, Target: srv.Target, Backup: srv.Backup,
		Address: netip.AddrPortFrom(srv.ListenAddr, uint16(srv.Port)).String(),
		DSN:     srv.DSN(r.spec.Database.User, r.spec.Database.Name),
		DataDir: srv.DataDir, LogFile: srv.LogFile, PID: srv.Pid(), LastReplayed: srv.LastReplayed,
		TookMS: float64(time.Since(start).Milliseconds()),
	}
	r.dbx.mu.Lock()
	if r.dbx.restores == nil {
		r.dbx.restores = map[string]*restoredDB{}
	}
	r.dbx.restores[id] = &restoredDB{info: info, srv: srv}
	r.dbx.mu.Unlock()
	r.events.Add("db", "restore-done", id, "restored server at "+info.Address+" (stop it with `haven db restore-stop "+id+"`)")
	return info, nil
}

func (r *Region) restoreList() []api.DBRestore {
	r.dbx.mu.Lock()
	defer r.dbx.mu.Unlock()
	out := []api.DBRestore{}
	for _, rd := range r.dbx.restores {
		in := rd.info
		in.PID = rd.srv.Pid()
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// drillLogin creates (or re-keys) the drills' role, <user>_drill, with a
// fresh random password, and lets it create tables in the app database's
// public schema. Only the SCRAM verifier reaches the server.
func (r *Region) drillLogin(ctx context.Context) (api.DBDrillLogin, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s := r.spec.Database
	out := api.DBDrillLogin{User: s.User + "_drill", Database: s.Name, Endpoint: s.Endpoint}
	if r.appAuth() != pgha.AuthTrust {
		out.Password = pgha.NewPassword()
	}
	if err := r.db.EnsureWorkRole(ctx, s.Name, out.User, out.Password); err != nil {
		return api.DBDrillLogin{}, fmt.Errorf("drill login: %w", err)
	}
	r.events.Add("db", "drill-login", out.User, "drill role (re)keyed")
	return out, nil
}

// drillLogout clears the drill role's password, so the login a drill was
// handed stops working when the drill ends.
func (r *Region) drillLogout(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := r.db.ClearPassword(ctx, r.spec.Database.User+"_drill"); err != nil {
		return fmt.Errorf("drill logout: %w", err)
	}
	return nil
}
