package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// BackupInfo describes one backup in the repository.
type BackupInfo struct {
	// Label is pgBackRest's backup set label, e.g. "20250101-030000F".
	Label string `json:"label"`
	// Type is full, incr or diff.
	Type Kind `json:"type"`
	// Prior is the backup an incremental or differential one is based on.
	Prior string `json:"prior,omitempty"`
	// Start and Stop are when the backup started and finished (second
	// granularity, as pgBackRest records them).
	Start time.Time `json:"start"`
	Stop  time.Time `json:"stop"`
	// WALStart and WALStop are the first and last WAL segments the backup needs.
	WALStart string `json:"wal_start"`
	WALStop  string `json:"wal_stop"`
	// Size is the database size; RepoSize what the backup takes in the
	// repository (compressed, only changed files for incrementals).
	Size     int64 `json:"size"`
	RepoSize int64 `json:"repo_size"`

	dbID    int    // the repository's database id, whose archive it needs
	lsnStop uint64 // where the backup became consistent
}

// Listing is the repository's content.
type Listing struct {
	Backups []BackupInfo `json:"backups"`
	// WALMin and WALMax are the oldest and newest archived WAL segments.
	WALMin string `json:"wal_min,omitempty"`
	WALMax string `json:"wal_max,omitempty"`
	// EarliestRestorable is the end of the oldest backup: no restore can
	// target an earlier time.
	EarliestRestorable time.Time `json:"earliest_restorable,omitempty"`
	// LatestRestorable is the latest time a restore can target: one
	// microsecond before the newest commit in the archived WAL (recovery
	// to T stops at the first commit after T, so a later commit must be
	// archived). Zero when the archive holds no commit after the first backup.
	LatestRestorable time.Time `json:"latest_restorable,omitempty"`
	// ChainProblem says why there is no latest restorable time although
	// WAL is archived: the newest backup's first segment is missing, or the
	// newest timeline does not descend from the backup's.
	ChainProblem string `json:"chain_problem,omitempty"`
	// ChainEnd is the last segment of the continuous chain of archived WAL
	// a restore from the newest backup replays; LatestRestorable comes from
	// it. It is behind WALMax while a segment is still missing (right after
	// failovers a short-lived timeline's last segment can reach the archive
	// after newer ones do).
	ChainEnd string `json:"chain_end,omitempty"`

	archiveID string // the newest backup's archive id, e.g. "15-1"
}

// infoJSON is the subset of `pgbackrest info --output=json` used here.
type infoJSON []struct {
	Name    string `json:"name"`
	Archive []struct {
		ID       string     `json:"id"`
		Max      string     `json:"max"`
		Min      string     `json:"min"`
		Database databaseID `json:"database"`
	} `json:"archive"`
	Backup []struct {
		Label   string  `json:"label"`
		Type    string  `json:"type"`
		Prior   *string `json:"prior"`
		Archive struct {
			Start string `json:"start"`
			Stop  string `json:"stop"`
		} `json:"archive"`
		Database databaseID `json:"database"`
		LSN      struct {
			Stop string `json:"stop"`
		} `json:"lsn"`
		Info struct {
			Size       int64 `json:"size"`
			Repository struct {
				Delta int64 `json:"delta"`
			} `json:"repository"`
		} `json:"info"`
		Timestamp struct {
			Start int64 `json:"start"`
			Stop  int64 `json:"stop"`
		} `json:"timestamp"`
	} `json:"backup"`
	Status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
}

// databaseID is the repository's number for one database system (a new one
// after a stanza upgrade).
type databaseID struct {
	ID int `json:"id"`
}

// parseInfo turns pgbackrest info JSON into a Listing (without LatestRestorable).
func parseInfo(b []byte, stanza string) (Listing, error) {
	var info infoJSON
	if err := json.Unmarshal(b, &info); err != nil {
		return Listing{}, fmt.Errorf("parse pgbackrest info: %w", err)
	}
	var l Listing
	type archive struct{ id, max string }
	archives := map[int]archive{} // database id → its archive id with the newest segment
	for _, s := range info {
		if s.Name != stanza {
			continue
		}
		for _, a := range s.Archive {
			if a.Max > l.WALMax {
				l.WALMax = a.Max
			}
			if a.Min != "" && (l.WALMin == "" || a.Min < l.WALMin) {
				l.WALMin = a.Min
			}
			if a.Max >= archives[a.Database.ID].max {
				archives[a.Database.ID] = archive{a.ID, a.Max}
			}
		}
		for _, bk := range s.Backup {
			bi := BackupInfo{Label: bk.Label, Type: Kind(bk.Type), WALStart: bk.Archive.Start, WALStop: bk.Archive.Stop,
				Start: time.Unix(bk.Timestamp.Start, 0).UTC(), Stop: time.Unix(bk.Timestamp.Stop, 0).UTC(),
				Size: bk.Info.Size, RepoSize: bk.Info.Repository.Delta, dbID: bk.Database.ID}
			if bk.Prior != nil {
				bi.Prior = *bk.Prior
			}
			if lsn, ok := parseLSN(bk.LSN.Stop); ok {
				bi.lsnStop = lsn
			}
			l.Backups = append(l.Backups, bi)
		}
	}
	sort.SliceStable(l.Backups, func(i, j int) bool { return l.Backups[i].Stop.Before(l.Backups[j].Stop) })
	if len(l.Backups) > 0 {
		// pgBackRest records whole seconds; the backup's consistent point is
		// before Stop+1s.
		l.EarliestRestorable = l.Backups[0].Stop.Add(time.Second)
		l.archiveID = archives[l.Backups[len(l.Backups)-1].dbID].id
	}
	return l, nil
}

func (m *Manager) info(ctx context.Context) (Listing, error) {
	out, err := m.pgbackrest(ctx, nil, "--output=json", "info")
	if err != nil {
		return Listing{}, fmt.Errorf("list backups: %w", err)
	}
	return parseInfo(out, m.cfg.Stanza)
}

func (m *Manager) backups(ctx context.Context) ([]BackupInfo, error) {
	l, err := m.info(ctx)
	return l.Backups, err
}

// List returns the backups (oldest first) and the restorable window. The
// latest restorable time is just before the newest commit a restore from the
// newest backup can replay: the archive is walked from that backup's first
// segment along the timeline history, as recovery reads it, up to the first
// missing segment, and the commit timestamps of the chain's last segments
// are read with archive-get and pg_waldump (cached). A restore to any time
// between EarliestRestorable and LatestRestorable reaches its target;
// PostgreSQL fails a recovery whose target is after the last commit it can
// replay ("recovery ended before configured recovery target was reached").
func (m *Manager) List(ctx context.Context) (l Listing, err error) {
	defer func() { m.publishRestorable(l, err) }()
	l, err = m.info(ctx)
	if err != nil {
		return Listing{}, err
	}
	if l.WALMax == "" || len(l.Backups) == 0 {
		return l, nil
	}
	newest := l.Backups[len(l.Backups)-1]
	chain, problem, err := m.archiveChain(ctx, l.archiveID, newest)
	if err != nil {
		return l, fmt.Errorf("latest restorable time: %w", err)
	}
	if problem != "" {
		l.ChainProblem = problem
		return l, nil
	}
	l.ChainEnd = resolveSeg(chain.tles, chain.end)
	// The newest commit is normally in the chain's last segment (the
	// archive ticker commits a marker before each switch); look a few
	// segments back in case the last ones hold none.
	for i := uint64(0); i < 4 && i <= chain.end-chain.start; i++ {
		seg := resolveSeg(chain.tles, chain.end-i)
		t, ok, err := m.lastCommit(ctx, seg)
		if err != nil {
			return l, fmt.Errorf("latest restorable time: %w", err)
		}
		if ok {
			// Recovery to T stops at the first commit after T, so the
			// newest commit itself is not a reachable target: one
			// microsecond before it is (and loses nothing but that commit,
			// normally the archive ticker's empty marker).
			if t = t.Add(-time.Microsecond); t.After(l.EarliestRestorable) {
				l.LatestRestorable = t
			}
			break
		}
	}
	return l, nil
}

// walCache remembers the last commit time found in archived segments.
type walCache struct {
	mu        sync.Mutex
	m         map[string]walCommit
	histories map[string]string
	chain     verifiedChain
}

var errNoDataDir = errors.New("no node has a data directory to read pg_control from")

type walCommit struct {
	t  time.Time
	ok bool
}

// lastCommit returns the timestamp of the last commit record in the archived
// segment seg; ok is false when the segment has none.
func (m *Manager) lastCommit(ctx context.Context, seg string) (time.Time, bool, error) {
	m.wal.mu.Lock()
	if c, hit := m.wal.m[seg]; hit {
		m.wal.mu.Unlock()
		return c.t, c.ok, nil
	}
	m.wal.mu.Unlock()
	dst, cleanup, err := m.fetchWAL(ctx, seg)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("fetch WAL segment %s: %w", seg, err)
	}
	defer cleanup()
	cmd := m.command(ctx, filepath.Join(m.cfg.PGBinDir, "pg_waldump"), "--rmgr=Transaction", dst)
	out, err := cmd.Output() // exits 1 at the end of valid WAL in a switched segment
	if len(out) == 0 && err != nil && ctx.Err() != nil {
		return time.Time{}, false, ctx.Err()
	}
	t, ok := lastCommitTime(string(out))
	m.wal.mu.Lock()
	if m.wal.m == nil {
		m.wal.m = map[string]walCommit{}
	}
	m.wal.m[seg] = walCommit{t, ok}
	m.wal.mu.Unlock()
	return t, ok, nil
}

// existingDataDir is a node data directory holding pg_control (archive-get
// reads it to check the database system identifier).
func (m *Manager) existingDataDir() string {
	for _, n := range m.cfg.Nodes {
		if _, err := os.Stat(filepath.Join(n.DataDir, "global", "pg_control")); err == nil {
			return n.DataDir
		}
	}
	return ""
}

// commitRE matches pg_waldump's commit description, printed in TZ=UTC, e.g.
// "desc: COMMIT 2025-01-01 03:00:00.123456 UTC".
var commitRE = regexp.MustCompile(`desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC`)

// lastCommitTime returns the last commit timestamp in pg_waldump output.
func lastCommitTime(out string) (time.Time, bool) {
	ms := commitRE.FindAllStringSubmatch(out, -1)
	if len(ms) == 0 {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01-02 15:04:05.999999", ms[len(ms)-1][1])
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}
