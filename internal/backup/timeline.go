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

// tlEntry is one timeline of a history and the first segment recovery reads
// from it: the segment holding the LSN where the timeline branched off its
// parent (0 for the first timeline).
type tlEntry struct {
	tli   uint32
	begin uint64
}

// historyRE matches a timeline history line: parent timeline, switchpoint
// LSN, and a free-text reason.
var historyRE = regexp.MustCompile(`^\s*(\d+)\s+([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})`)

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
		m := historyRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("timeline %d history, line %d: cannot parse %q", tli, i+1, line)
		}
		parent, _ := strconv.ParseUint(m[1], 10, 32)
		hi, _ := strconv.ParseUint(m[2], 16, 32)
		lo, _ := strconv.ParseUint(m[3], 16, 32)
		if len(out) > 0 && uint32(parent) <= out[0].tli {
			return nil, fmt.Errorf("timeline %d history, line %d: timeline %d does not follow %d", tli, i+1, parent, out[0].tli)
		}
		out = append([]tlEntry{{uint32(parent), begin}}, out...)
		begin = (hi<<32 | lo) / (16 << 20)
	}
	if len(out) > 0 && tli <= out[0].tli {
		return nil, fmt.Errorf("timeline %d history: its parent %d is not older", tli, out[0].tli)
	}
	return append([]tlEntry{{tli, begin}}, out...), nil
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
	if !slices.Equal(tles[extra:], c.tles) {
		return 0, false
	}
	end := c.end
	if extra > 0 {
		b := tles[extra-1].begin
		if b <= start {
			return 0, false
		}
		end = min(end, b-1)
	}
	return end, true
}

// archiveChainEnd returns the continuous chain of archived segments
// recovery reads from the backup starting at segment walStart, following
// the newest timeline whose history is archived (PostgreSQL probes
// timelines after the backup's one by one and stops at the first without a
// history file). ok is false when the archive lacks even the first segment.
func (m *Manager) archiveChainEnd(ctx context.Context, archiveID, walStart string) (verifiedChain, bool, error) {
	var none verifiedChain
	tli, start, ok := parseSegName(walStart)
	if !ok {
		return none, false, fmt.Errorf("backup starts at WAL %q: not a segment name", walStart)
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
		return none, false, err
	}
	newest := tli
	for top.histories[newest+1] {
		newest++
	}
	tles := []tlEntry{{tli: tli}}
	if newest != tli {
		h, err := m.history(ctx, newest)
		if err != nil {
			return none, false, err
		}
		if tles, err = expectedTimelines(newest, h); err != nil {
			return none, false, err
		}
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
			return none, false, err
		}
		archived = func(name string) (bool, error) { return all.segments[name], nil }
	} else {
		dirs := map[string]repoListing{}
		archived = func(name string) (bool, error) {
			d, hit := dirs[name[:16]]
			if !hit {
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
			return none, false, err
		}
		if !ok {
			break
		}
		last, found = name, true
	}
	if !found {
		return none, false, nil
	}
	_, end, _ := parseSegName(last)
	c := verifiedChain{archiveID: archiveID, tles: tles, start: start, end: end}
	m.wal.mu.Lock()
	m.wal.chain = c
	m.wal.mu.Unlock()
	return c, true, nil
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
	pg1 := m.existingDataDir()
	if pg1 == "" {
		return "", errNoDataDir
	}
	dst := filepath.Join(m.cfg.Dir, "tmp", name)
	defer os.Remove(dst)
	if _, err := m.pgbackrest(ctx, nil, "--pg1-path="+pg1, "archive-get", name, dst); err != nil {
		return "", fmt.Errorf("fetch timeline history %s: %w", name, err)
	}
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
