package backup

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/pgha"
)

func TestParseInfo(t *testing.T) {
	// Two archives: the newest backup's database (id 1, "15-1") has the
	// older segment names; the other one sorts higher but is not its.
	in := `[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000020000000000000009","min":"000000010000000000000001"},
	  {"database":{"id":2,"repo-key":1},"id":"16-2","max":"00000005000000000000000A","min":"000000050000000000000001"}],
	"backup":[
	 {"archive":{"start":"000000010000000000000006","stop":"000000010000000000000006"},"database":{"id":1,"repo-key":1},"lsn":{"start":"0/6000028","stop":"0/6000138"},"info":{"size":200,"delta":20,"repository":{"size":30,"delta":3}},"label":"20250105-030000F_20250105-040000I","prior":"20250105-030000F","timestamp":{"start":1736049600,"stop":1736049602},"type":"incr"},
	 {"archive":{"start":"000000010000000000000003","stop":"000000010000000000000003"},"info":{"size":100,"delta":100,"repository":{"size":10,"delta":10}},"label":"20250105-030000F","prior":null,"timestamp":{"start":1736046000,"stop":1736046005},"type":"full"}],
	"name":"courses","status":{"code":0,"message":"ok"}},
	{"name":"other","backup":[{"label":"x","type":"full"}],"archive":[]}]`
	l, err := parseInfo([]byte(in), "courses")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Backups) != 2 || l.Backups[0].Label != "20250105-030000F" || l.Backups[1].Prior != "20250105-030000F" || l.Backups[1].Type != Incremental {
		t.Fatalf("backups = %+v, want full then incr, oldest first", l.Backups)
	}
	if l.archiveID != "15-1" || l.Backups[1].dbID != 1 || l.Backups[1].lsnStop != 0x6000138 {
		t.Errorf("archive id %q, newest backup's database %d and end LSN %#x; want 15-1, 1, 0x6000138", l.archiveID, l.Backups[1].dbID, l.Backups[1].lsnStop)
	}
	if l.WALMax != "00000005000000000000000A" || l.WALMin != "000000010000000000000001" {
		t.Errorf("wal = %s..%s", l.WALMin, l.WALMax)
	}
	if want := time.Unix(1736046006, 0).UTC(); !l.EarliestRestorable.Equal(want) {
		t.Errorf("earliest restorable = %s, want %s (stop + 1s)", l.EarliestRestorable, want)
	}
	if l.Backups[0].Size != 100 || l.Backups[0].RepoSize != 10 {
		t.Errorf("sizes = %d/%d, want 100/10", l.Backups[0].Size, l.Backups[0].RepoSize)
	}
	set, err := chooseSet(l, time.Unix(1736049603, 0))
	if err != nil || set.Type != Incremental {
		t.Errorf("chooseSet after the incremental = %v, %v; want the incremental", set.Label, err)
	}
	set, err = chooseSet(l, time.Unix(1736049602, 500))
	if err != nil || set.Type != Full {
		t.Errorf("chooseSet in the incremental's last second = %v, %v; want the full", set.Label, err)
	}
	if _, err := chooseSet(l, time.Unix(1736046005, 0)); err == nil || !strings.Contains(err.Error(), "earliest restorable") {
		t.Errorf("chooseSet before the first backup: err = %v", err)
	}
}

func TestLastCommitTime(t *testing.T) {
	out := `rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/03000028, prev 0/02000060, desc: COMMIT 2025-01-05 03:00:01.123456 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        736, lsn: 0/03000050, prev 0/03000028, desc: ABORT 2025-01-05 03:00:02.000000 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        737, lsn: 0/03000078, prev 0/03000050, desc: COMMIT 2025-01-05 03:00:01.9 UTC
`
	got, ok := lastCommitTime(out)
	if want := time.Date(2025, 1, 5, 3, 0, 1, 900000000, time.UTC); !ok || !got.Equal(want) {
		t.Errorf("lastCommitTime = %s, %v; want %s", got, ok, want)
	}
	if _, ok := lastCommitTime("rmgr: XLOG desc: SWITCH"); ok {
		t.Error("lastCommitTime found a commit in output without one")
	}
}

func TestConfigText(t *testing.T) {
	c := Config{Dir: "/state/backup", Stanza: "courses", Nodes: []pgha.Node{
		{Name: "db-a", Zone: "a", DataDir: "/a/data", ListenAddr: netip.MustParseAddr("127.0.1.10"), Port: 5432, SocketDir: "/a/sock"},
		{Name: "db-b", Zone: "b", DataDir: "/b/data", ListenAddr: netip.MustParseAddr("127.0.2.10"), Port: 5433, SocketDir: "/b/sock"},
	}, RetentionDays: 14}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.setDefaults()
	got := configText(c)
	for _, want := range []string{"repo1-path=/state/backup/repo\n", "repo1-retention-full-type=time\n", "repo1-retention-full=14\n",
		"compress-type=zst\n", "archive-async=n\n", "archive-timeout=10\n", "process-max=1\n", "backup-standby=n\n", "archive-mode-check=n\n",
		"[courses]\n", "pg1-path=/a/data\npg1-port=5432\npg1-socket-path=/a/sock\n", "pg2-path=/b/data\npg2-port=5433\npg2-socket-path=/b/sock\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("pgbackrest.conf lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"pass", "cipher", "key"} {
		if strings.Contains(strings.ToLower(got), bad) {
			t.Errorf("pgbackrest.conf mentions %q", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	node := pgha.Node{Name: "db-a", Zone: "a", DataDir: "/a", ListenAddr: netip.MustParseAddr("127.0.1.1"), Port: 1, SocketDir: "/s"}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"relative dir", Config{Dir: "x", Stanza: "s", Nodes: []pgha.Node{node}}, "backup.dir"},
		{"bad stanza", Config{Dir: "/x", Stanza: "a b", Nodes: []pgha.Node{node}}, "backup.stanza"},
		{"no nodes", Config{Dir: "/x", Stanza: "s"}, "backup.nodes"},
		{"bad compression", Config{Dir: "/x", Stanza: "s", Nodes: []pgha.Node{node}, CompressType: "xz"}, "backup.compress_type"},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one naming %s", tt.name, err, tt.want)
		}
	}
}
