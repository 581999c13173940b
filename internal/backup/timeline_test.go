package backup

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSegName(t *testing.T) {
	for _, c := range []struct {
		tli   uint32
		segno uint64
		name  string
	}{
		{1, 5, "000000010000000000000005"},
		{2, 0xFF, "0000000200000000000000FF"},
		{2, 0x100, "000000020000000100000000"},
		{0x1A, 0x200_0033, "0000001A0002000000000033"},
	} {
		if got := segName(c.tli, c.segno); got != c.name {
			t.Errorf("segName(%d, %#x) = %s, want %s", c.tli, c.segno, got, c.name)
		}
		tli, segno, ok := parseSegName(c.name)
		if !ok || tli != c.tli || segno != c.segno {
			t.Errorf("parseSegName(%s) = %d, %#x, %v; want %d, %#x", c.name, tli, segno, ok, c.tli, c.segno)
		}
	}
	for _, bad := range []string{"", "bad", "00000001000000000000000G", "000000010000000000000100", "00000002.history"} {
		if _, _, ok := parseSegName(bad); ok {
			t.Errorf("parseSegName(%q) accepted", bad)
		}
	}
}

func TestExpectedTimelines(t *testing.T) {
	// Timeline 4 branched from 3 inside segment 0x12, 3 from 2 at the
	// start of segment 0x10, 2 from 1 inside segment 8.
	h := "1\t0/8123456\tno recovery target specified\n\n" +
		"2\t0/10000000\tno recovery target specified\n" +
		"3\t0/12FF0000\tno recovery target specified\n"
	got, err := expectedTimelines(4, h)
	if err != nil {
		t.Fatal(err)
	}
	want := []tlEntry{{4, 0x12, 0}, {3, 0x10, 0x12FF0000}, {2, 8, 0x10000000}, {1, 0, 0x8123456}}
	if len(got) != len(want) {
		t.Fatalf("expectedTimelines = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("expectedTimelines[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if got, err := expectedTimelines(1, ""); err != nil || len(got) != 1 || got[0] != (tlEntry{1, 0, 0}) {
		t.Errorf("expectedTimelines(1, \"\") = %v, %v; want [{1 0}]", got, err)
	}
	// A history above 4 GB of WAL: the log id counts.
	if got, err := expectedTimelines(2, "1\t1/2000000\tx\n"); err != nil || got[0] != (tlEntry{2, 0x102, 0}) || got[1].end != 0x1_0200_0000 {
		t.Errorf("expectedTimelines(2, 1/2000000) = %v, %v; want timeline 2 from segment 0x102", got, err)
	}
	for name, bad := range map[string]string{
		"garbage":          "hello\n",
		"parents go back":  "2\t0/8000000\tx\n1\t0/9000000\tx\n",
		"parent not older": "4\t0/8000000\tx\n",
		"switch goes back": "1\t0/9000000\tx\n2\t0/8000000\tx\n",
		"no LSN":           "1\tx\n",
		"one field":        "1\n",
	} {
		if _, err := expectedTimelines(3, bad); err == nil {
			t.Errorf("%s: expectedTimelines accepted %q", name, bad)
		}
	}
}

func TestResolveSeg(t *testing.T) {
	tles := []tlEntry{{3, 0x10, 0}, {2, 8, 0x10000000}, {1, 0, 0x8000000}}
	for segno, want := range map[uint64]string{
		1:    "000000010000000000000001",
		7:    "000000010000000000000007",
		8:    "000000020000000000000008", // the switch segment comes from the new timeline
		0xF:  "00000002000000000000000F",
		0x10: "000000030000000000000010",
		0x99: "000000030000000000000099",
	} {
		if got := resolveSeg(tles, segno); got != want {
			t.Errorf("resolveSeg(%#x) = %s, want %s", segno, got, want)
		}
	}
}

func TestDescends(t *testing.T) {
	tles := []tlEntry{{3, 0x10, 0}, {2, 8, 0x10000000}, {1, 0, 0x8000000}}
	for _, c := range []struct {
		name string
		tli  uint32
		stop uint64
		want bool
	}{
		{"a backup on the newest timeline", 3, 0x12000000, true},
		{"a backup that ended before its timeline did", 2, 0x9000000, true},
		{"a backup that ended at the switch", 1, 0x8000000, true},
		{"a backup that ended after its timeline did", 1, 0x8000100, false},
		{"a timeline not on the history", 4, 0x12000000, false},
		{"an unknown end", 2, 0, true},
	} {
		if got := descends(tles, c.tli, c.stop); got != c.want {
			t.Errorf("%s: descends(timeline %d, %#x) = %v, want %v", c.name, c.tli, c.stop, got, c.want)
		}
	}
}

func TestParseRepoLs(t *testing.T) {
	recursive := `{".":{"type":"path"},"0000000100000000":{"type":"path"},
"0000000100000000/000000010000000000000001-14fdd37efe3ae5622c566f9e896b877b411d64e9.zst":{"type":"file","size":1,"time":1},
"0000000100000000/000000010000000000000002.00000028.backup":{"type":"file","size":1,"time":1},
"0000000100000000/000000010000000000000003.partial-99c467df0c82e8a9e50e917f44cff509561ba317.zst":{"type":"file","size":1,"time":1},
"0000000200000000/000000020000000000000003-99c467df0c82e8a9e50e917f44cff509561ba317":{"type":"file","size":1,"time":1},
"00000002.history":{"type":"file","size":41,"time":1},
"archive.info":{"type":"file","size":253,"time":1}}`
	l, err := parseRepoLs([]byte(recursive))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.segments) != 2 || !l.segments["000000010000000000000001"] || !l.segments["000000020000000000000003"] {
		t.Errorf("segments = %v, want segments 1 on timeline 1 and 3 on timeline 2 (no .backup, no .partial)", l.segments)
	}
	if len(l.histories) != 1 || !l.histories[2] {
		t.Errorf("histories = %v, want timeline 2", l.histories)
	}
	// One timeline/log-id directory: names without the directory.
	l, err = parseRepoLs([]byte(`{"000000010000000000000004-8887f69ef50bdb2efa2430e36bfd586dfe18df19.gz":{"type":"file"}}`))
	if err != nil || !l.segments["000000010000000000000004"] {
		t.Errorf("directory listing: %v, %v", l.segments, err)
	}
	if _, err := parseRepoLs([]byte("not json")); err == nil {
		t.Error("parseRepoLs accepted garbage")
	}
}

func TestResumeFrom(t *testing.T) {
	tl2 := []tlEntry{{2, 8, 0}, {1, 0, 0x8000000}}
	tl3 := []tlEntry{{3, 0x10, 0}, {2, 8, 0x10000000}, {1, 0, 0x8000000}}
	tl3late := []tlEntry{{3, 0x20, 0}, {2, 8, 0x20000000}, {1, 0, 0x8000000}}
	c := verifiedChain{archiveID: "15-1", tles: tl2, start: 2, end: 0x14}
	for _, tc := range []struct {
		name      string
		archiveID string
		tles      []tlEntry
		start     uint64
		want      uint64
		ok        bool
	}{
		{"same chain", "15-1", tl2, 2, 0x14, true},
		{"a newer backup inside the chain", "15-1", tl2, 9, 0x14, true},
		{"a backup past the chain", "15-1", tl2, 0x15, 0, false},
		{"an older backup", "15-1", tl2, 1, 0, false},
		{"another archive id", "16-2", tl2, 2, 0, false},
		{"a new timeline: valid up to its start", "15-1", tl3, 2, 0xF, true},
		{"a new timeline after the chain", "15-1", tl3late, 2, 0x14, true},
		{"a different history", "15-1", []tlEntry{{3, 0x10, 0}, {2, 9, 0x10000000}, {1, 0, 0x9000000}}, 2, 0, false},
		{"fewer timelines", "15-1", []tlEntry{{1, 0, 0}}, 2, 0, false},
	} {
		got, ok := c.resumeFrom(tc.archiveID, tc.tles, tc.start)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: resumeFrom = %#x, %v; want %#x, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	// A new timeline that begins at or before the start: nothing to reuse.
	if _, ok := (verifiedChain{archiveID: "15-1", tles: tl2, start: 0x11, end: 0x14}).resumeFrom("15-1", tl3, 0x11); ok {
		t.Error("resumeFrom reused a chain whose start is past a new timeline's switch")
	}
}

// TestLatestRestorableStopsAtAGap removes one archived segment from the
// middle of the archive: the latest restorable time must stop before it
// (a restore to a later time would end short of its target), a restore to
// it must succeed with exactly the rows before the gap, and once the
// segment is back the window reaches the newest segment again.
func TestLatestRestorableStopsAtAGap(t *testing.T) {
	e := startEnv(t, 1, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := e.mgr.Backup(ctx, Full, nil); err != nil {
		t.Fatal(err)
	}
	// Commits before the end of the backup (second granularity) are not
	// restorable targets: write after it.
	l, err := e.mgr.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(l.EarliestRestorable) + 10*time.Millisecond)
	conn := connect(t, e.cluster.Primary().AdminDSN())
	if _, err := conn.Exec(ctx, "CREATE TABLE gap (id int); CREATE TABLE marker (at timestamptz)"); err != nil {
		t.Fatal(err)
	}
	// Row i is committed in segment segs[i-1], followed by a marker commit
	// (as the archive ticker does), then the segment is switched.
	var segs []string
	for i := 1; i <= 5; i++ {
		var seg string
		if _, err := conn.Exec(ctx, "INSERT INTO gap VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO marker VALUES (now())"); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
			t.Fatal(err)
		}
		segs = append(segs, seg)
	}
	// Wait with pgbackrest info, not List: List remembers the chain it
	// verified, and this test removes a segment from under it, which
	// nothing but a person with root does to a live archive.
	waitFor(t, 30*time.Second, "segments archived", func() bool {
		l, err := e.mgr.info(ctx)
		return err == nil && l.WALMax >= segs[4]
	})

	// Hide the segment holding row 3.
	matches, _ := filepath.Glob(filepath.Join(e.mgr.cfg.RepoPath, "archive", "test", "*", segs[2][:16], segs[2]+"-*"))
	if len(matches) != 1 {
		t.Fatalf("archived copies of %s: %v, want one", segs[2], matches)
	}
	hidden := filepath.Join(e.dir, "hidden-segment")
	if err := os.Rename(matches[0], hidden); err != nil {
		t.Fatal(err)
	}
	l, err = e.mgr.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with %s missing: WALMax %s, chain end %s, latest restorable %s", segs[2], l.WALMax, l.ChainEnd, l.LatestRestorable)
	if l.ChainEnd != segs[1] || l.WALMax < segs[4] {
		t.Fatalf("chain end %s (WAL max %s), want %s: the segment before the gap", l.ChainEnd, l.WALMax, segs[1])
	}
	lo := netip.MustParseAddr("127.0.0.1")
	srv, err := e.mgr.Restore(ctx, RestoreOptions{TargetTime: l.LatestRestorable, DataDir: filepath.Join(e.dir, "restored"), ListenAddr: lo, Port: freePort(t, lo)})
	if err != nil {
		t.Fatalf("restore to the latest restorable time with a gap in the archive: %v", err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	var ids []int32
	rc := connect(t, srv.AdminDSN())
	if err := rc.QueryRow(ctx, "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM gap").Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []int32{1, 2}) {
		t.Errorf("restored rows %v, want [1 2]: everything before the gap, nothing after", ids)
	}
	rc.Close(ctx)
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// The segment is back: the chain resumes past it to the newest one.
	if err := os.Rename(hidden, matches[0]); err != nil {
		t.Fatal(err)
	}
	l2, err := e.mgr.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l2.ChainEnd < segs[4] || !l2.LatestRestorable.After(l.LatestRestorable) {
		t.Errorf("after the segment came back: chain end %s, latest restorable %s; want at least %s and after %s", l2.ChainEnd, l2.LatestRestorable, segs[4], l.LatestRestorable)
	}

	// Without the backup's first segment nothing is restorable, and List
	// says why (a fresh walk: forget the verified chain, as a restarted
	// daemon would).
	first := l2.Backups[len(l2.Backups)-1].WALStart
	matches, _ = filepath.Glob(filepath.Join(e.mgr.cfg.RepoPath, "archive", "test", "*", first[:16], first+"-*"))
	if len(matches) != 1 {
		t.Fatalf("archived copies of %s: %v, want one", first, matches)
	}
	if err := os.Rename(matches[0], hidden); err != nil {
		t.Fatal(err)
	}
	e.mgr.wal.mu.Lock()
	e.mgr.wal.chain = verifiedChain{}
	e.mgr.wal.mu.Unlock()
	l3, err := e.mgr.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !l3.LatestRestorable.IsZero() || l3.ChainEnd != "" || !strings.Contains(l3.ChainProblem, "lacks "+first) {
		t.Errorf("without %s: latest restorable %s, chain end %q, problem %q; want none, and the missing segment named", first, l3.LatestRestorable, l3.ChainEnd, l3.ChainProblem)
	}
}
