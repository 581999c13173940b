package pgha

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/pgha/endpoint"
)

// The endpoint proxy is what the controller repoints.
var _ Endpoint = (*endpoint.Proxy)(nil)

func TestHBA(t *testing.T) {
	got := HBA(HBAConfig{AppAuth: AuthSCRAM, AppDatabase: "courses",
		AppNetworks:      []netip.Prefix{netip.MustParsePrefix("127.0.1.0/24")},
		ReplicationPeers: []netip.Prefix{netip.MustParsePrefix("127.0.2.250/32")}})
	var lines []string
	for _, l := range strings.Split(got, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	want := []string{
		"local all postgres trust",
		"local replication postgres trust",
		"host replication replicator 127.0.2.250/32 trust",
		"host all postgres all reject",
		"host all replicator all reject",
		"host courses all 127.0.1.0/24 scram-sha-256",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("HBA =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestStandbySettingsNeverWaitForAStandby(t *testing.T) {
	n := Node{Name: "db-b", ListenAddr: netip.MustParseAddr("127.0.2.250"), Port: 5432, SocketDir: "/s"}
	for _, rc := range []runConfig{
		{standby: true, primaryConnInfo: "host=x", syncStandbyNames: `FIRST 1 ("db-a")`},
		{standby: true, primaryConnInfo: "host=x", archiveCommand: "pgbackrest archive-push %p"},
	} {
		conf := autoConf(serverSettings(n, rc))
		if !strings.Contains(conf, "synchronous_standby_names = ''\n") {
			t.Errorf("standby conf does not clear synchronous_standby_names:\n%s", conf)
		}
		if !strings.Contains(conf, "primary_conninfo = 'host=x'") {
			t.Errorf("standby conf lacks primary_conninfo:\n%s", conf)
		}
		if rc.archiveCommand != "" && !strings.Contains(conf, "archive_mode = 'always'") {
			t.Errorf("archive_mode is not always with an archive command:\n%s", conf)
		}
	}
	primary := autoConf(serverSettings(n, runConfig{syncStandbyNames: syncNames("db-a")}))
	if !strings.Contains(primary, `synchronous_standby_names = 'FIRST 1 ("db-a")'`) {
		t.Errorf("primary conf:\n%s", primary)
	}
}
