package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The latest restorable time must be reachable: recovery replays WAL
// segment after segment from the backup's start and ends at the first one
// the archive does not hold. This file works out, from the repository's
// listing and the timeline history files, the last segment of that
// continuous chain, reading the archive the way PostgreSQL's recovery does
// (recovery_target_timeline = latest).

// walSegmentsPerID is the number of 16 MB segments per 4 GB WAL "log id",
// the middle 8 hex digits of a segment name.
const walSegmentsPerID = 0x100000000 / (16 << 20)

// segName is the file name of WAL segment segno on timeline tli.
func segName(tli uint32, segno uint64) string {
	return fmt.Sprintf("%08X%08X%08X", tli, segno/walSegmentsPerID, segno%walSegmentsPerID)
}

// parseSegName splits a segment file name into timeline and segment number.
func parseSegName(name string) (tli uint32, segno uint64, ok bool) {
	if len(name) != 24 {
		return 0, 0, false
	}
	t, err1 := strconv.ParseUint(name[:8], 16, 32)
	id, err2 := strconv.ParseUint(name[8:16], 16, 32)
	seg, err3 := strconv.ParseUint(name[16:], 16, 32)
	if err1 != nil || err2 != nil || err3 != nil || seg >= walSegmentsPerID {
		return 0, 0, false
	}
	return uint32(t), id*walSegmentsPerID + seg, true
}

// tlEntry is one timeline of a history: the first segment recovery reads
// from it, the one holding the LSN where the timeline branched off its
// parent (0 for the first timeline), and the LSN where its child branched
// off it (0 for the newest timeline, which has not ended).
type tlEntry struct {
	tli   uint32
	begin uint64
	end   uint64
}

// parseLSN reads an LSN as PostgreSQL prints it, e.g. "0/9AE9F30".
func parseLSN(s string) (uint64, bool) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, false
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return h<<32 | l, true
}

// expectedTimelines turns the history file of timeline tli into the
// timelines recovery follows, newest first, as PostgreSQL's
// readTimeLineHistory does. An empty history means tli has no ancestors.
func expectedTimelines(tli uint32, history string) ([]tlEntry, error) {
	var (
		out   []tlEntry
		begin uint64
	)
	for i, line := range strings.Split(history, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		var (
			parent uint64
			err    error
			lsn    uint64
			ok     bool
		)
		if len(f) >= 2 {
			parent, err = strconv.ParseUint(f[0], 10, 32)
			lsn, ok = parseLSN(f[1])
		}
		if len(f) < 2 || err != nil || !ok {
			return nil, fmt.Errorf("timeline %d history, line %d: cannot parse %q", tli, i+1, line)
		}
		if len(out) > 0 && uint32(parent) <= out[0].tli {
			return nil, fmt.Errorf("timeline %d history, line %d: timeline %d does not follow %d", tli, i+1, parent, out[0].tli)
		}
		if len(out) > 0 && lsn < out[0].end {
			return nil, fmt.Errorf("timeline %d history, line %d: switchpoint %s is before the previous one", tli, i+1, f[1])
		}
		out = append([]tlEntry{{uint32(parent), begin, lsn}}, out...)
		begin = lsn / (16 << 20)
	}
	if len(out) > 0 && tli <= out[0].tli {
		return nil, fmt.Errorf("timeline %d history: its parent %d is not older", tli, out[0].tli)
	}
	return append([]tlEntry{{tli, begin, 0}}, out...), nil
}

// descends reports whether recovery along tles can start from a backup
// taken on timeline tli that became consistent at LSN stop: tli must be on
// the history and, unless it is the newest timeline, must have ended after
// stop (else PostgreSQL refuses: "requested timeline is not a child of this
// server's history"). stop 0 (unknown) checks only the timeline.
func descends(tles []tlEntry, tli uint32, stop uint64) bool {
	i := slices.IndexFunc(tles, func(e tlEntry) bool { return e.tli == tli })
	return i == 0 || (i > 0 && tles[i].end >= stop)
}

// resolveSeg is the file recovery reads for segment segno when it follows
// timelines tles (newest first): the newest timeline that has begun by then.
//
// PostgreSQL would also try an older timeline's copy of a segment missing
// from the archive. That copy holds only WAL from before the switch if it
// is the switch segment, and a diverged history if it is later, so the
// chain here does not count it: it may end a segment early, never late.
func resolveSeg(tles []tlEntry, segno uint64) string {
	for _, e := range tles {
		if e.begin <= segno {
			return segName(e.tli, segno)
		}
	}
	return segName(tles[len(tles)-1].tli, segno)
}

// segmentFileRE matches an archived segment in a repo-ls listing of an
// archive id directory (recursive) or of one of its timeline/log-id
// directories, e.g. "0000000100000000/000000010000000000000003-<sha1>.zst".
var segmentFileRE = regexp.MustCompile(`^(?:[0-9A-F]{16}/)?([0-9A-F]{24})-[0-9a-f]{40}(\.[a-z0-9]+)?$`)

// historyFileRE matches a timeline history file, e.g. "00000002.history".
var historyFileRE = regexp.MustCompile(`^([0-9A-F]{8})\.history$`)

// repoListing is what a repo-ls of the archive holds: full WAL segments
// (partial ones are never replayed) and timelines with a history file.
type repoListing struct {
	segments  map[string]bool
	histories map[uint32]bool
}

// parseRepoLs reads `pgbackrest repo-ls --output=json` of an archive
// directory.
func parseRepoLs(b []byte) (repoListing, error) {
	var ents map[string]struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &ents); err != nil {
		return repoListing{}, fmt.Errorf("parse repository listing: %w", err)
	}
	l := repoListing{segments: map[string]bool{}, histories: map[uint32]bool{}}
	for name, e := range ents {
		if e.Type != "file" {
			continue
		}
		if m := segmentFileRE.FindStringSubmatch(name); m != nil {
			l.segments[m[1]] = true
		} else if m := historyFileRE.FindStringSubmatch(name); m != nil {
			t, _ := strconv.ParseUint(m[1], 16, 32)
			l.histories[uint32(t)] = true
		}
	}
	return l, nil
}

// verifiedChain is the chain found by the previous archiveChainEnd: its
// segments are in the archive and stay there (expiry only removes WAL older
// than the oldest kept backup), so the next call resumes after end instead
// of listing the whole archive again.
type verifiedChain struct {
	archiveID  string
	tles       []tlEntry
	start, end uint64
}

// resumeFrom returns the last segment of c still valid for a chain from
// start along tles: c must be for the same archive, cover start, and tles
// must extend c's timelines (new timelines only change segments from where
// the oldest new one begins).
func (c verifiedChain) resumeFrom(archiveID string, tles []tlEntry, start uint64) (uint64, bool) {
	if c.archiveID != archiveID || start < c.start || start > c.end || len(tles) < len(c.tles) {
		return 0, false
	}
	extra := len(tles) - len(c.tles)
	// The same timelines with the same beginnings (the newest one's end
	// is set once a child branches off it).
	if !slices.EqualFunc(tles[extra:], c.tles, func(a, b tlEntry) bool { return a.tli == b.tli && a.begin == b.begin }) {
		return 0, false
	}
	end := c.end
	for _, e := range tles[:extra] {
		if e.begin <= start {
			return 0, false
		}
		end = min(end, e.begin-1)
	}
	return end, true
}

// archiveChain returns the continuous chain of archived segments recovery
// reads from backup b, following the newest timeline whose history is
// archived (PostgreSQL probes timelines after the backup's one by one and
// stops at the first without a history file). problem says why there is no
// chain: the backup's first segment is missing, or the newest timeline does
// not descend from the backup (recovery would refuse it: "requested
// timeline is not a child of this server's history").
func (m *Manager) archiveChain(ctx context.Context, archiveID string, b BackupInfo) (chain verifiedChain, problem string, err error) {
	var none verifiedChain
	tli, start, ok := parseSegName(b.WALStart)
	if !ok {
		return none, "", fmt.Errorf("backup %s starts at WAL %q: not a segment name", b.Label, b.WALStart)
	}
	dir := path.Join("archive", m.cfg.Stanza, archiveID)
	ls := func(sub string, recurse bool) (repoListing, error) {
		args := []string{"--output=json", "repo-ls", path.Join(dir, sub)}
		if recurse {
			args = append([]string{"--recurse"}, args...)
		}
		out, err := m.pgbackrest(ctx, nil, args...)
		if err != nil {
			return repoListing{}, fmt.Errorf("list archive %s: %w", path.Join(dir, sub), err)
		}
		return parseRepoLs(out)
	}
	top, err := ls("", false)
	if err != nil {
		return none, "", err
	}
	newest := tli
	for top.histories[newest+1] {
		newest++
	}
	tles := []tlEntry{{tli: tli}}
	if newest != tli {
		h, err := m.history(ctx, newest)
		if err != nil {
			return none, "", err
		}
		if tles, err = expectedTimelines(newest, h); err != nil {
			return none, "", err
		}
	}
	if !descends(tles, tli, b.lsnStop) {
		return none, fmt.Sprintf("backup %s is on timeline %d, which the newest archived timeline %d does not descend from at the backup's end (a standby promoted before it had replayed the backup): take a new backup", b.Label, tli, newest), nil
	}

	m.wal.mu.Lock()
	prev := m.wal.chain
	m.wal.mu.Unlock()
	from, last, found := start, "", false
	if end, ok := prev.resumeFrom(archiveID, tles, start); ok {
		from, last, found = end+1, resolveSeg(tles, end), true
	}
	// Without a verified prefix, one recursive listing; when resuming, the
	// few timeline/log-id directories the walk reaches, one by one.
	var archived func(name string) (bool, error)
	if !found {
		all, err := ls("", true)
		if err != nil {
			return none, "", err
		}
		archived = func(name string) (bool, error) { return all.segments[name], nil }
	} else {
		dirs := map[string]repoListing{}
		archived = func(name string) (bool, error) {
			d, hit := dirs[name[:16]]
			if !hit {
				var err error
				if d, err = ls(name[:16], false); err != nil {
					return false, err
				}
				dirs[name[:16]] = d
			}
			return d.segments[name], nil
		}
	}
	for segno := from; ; segno++ {
		name := resolveSeg(tles, segno)
		ok, err := archived(name)
		if err != nil {
			return none, "", err
		}
		if !ok {
			break
		}
		last, found = name, true
	}
	if !found {
		return none, fmt.Sprintf("the archive lacks %s, the first WAL segment of backup %s: take a new backup", resolveSeg(tles, start), b.Label), nil
	}
	_, end, _ := parseSegName(last)
	c := verifiedChain{archiveID: archiveID, tles: tles, start: start, end: end}
	m.wal.mu.Lock()
	m.wal.chain = c
	m.wal.mu.Unlock()
	return c, "", nil
}

// history returns the archived history file of timeline tli (cached:
// history files never change once archived).
func (m *Manager) history(ctx context.Context, tli uint32) (string, error) {
	name := fmt.Sprintf("%08X.history", tli)
	m.wal.mu.Lock()
	h, hit := m.wal.histories[name]
	m.wal.mu.Unlock()
	if hit {
		return h, nil
	}
	dst, cleanup, err := m.fetchWAL(ctx, name)
	if err != nil {
		return "", fmt.Errorf("fetch timeline history %s: %w", name, err)
	}
	defer cleanup()
	b, err := os.ReadFile(dst)
	if err != nil {
		return "", fmt.Errorf("read timeline history %s: %w", name, err)
	}
	m.wal.mu.Lock()
	if m.wal.histories == nil {
		m.wal.histories = map[string]string{}
	}
	m.wal.histories[name] = string(b)
	m.wal.mu.Unlock()
	return string(b), nil
}

// fetchWAL copies an archived WAL file (a segment or a timeline history)
// into a fresh temporary directory, so concurrent calls never share a file;
// cleanup removes it.
func (m *Manager) fetchWAL(ctx context.Context, name string) (path string, cleanup func(), err error) {
	pg1 := m.existingDataDir()
	if pg1 == "" {
		return "", nil, errNoDataDir
	}
	dir, err := os.MkdirTemp(filepath.Join(m.cfg.Dir, "tmp"), "get-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	if err := m.chown(dir); err != nil {
		cleanup()
		return "", nil, err
	}
	dst := filepath.Join(dir, name)
	if _, err := m.pgbackrest(ctx, nil, "--pg1-path="+pg1, "archive-get", name, dst); err != nil {
		cleanup()
		return "", nil, err
	}
	return dst, cleanup, nil
}
