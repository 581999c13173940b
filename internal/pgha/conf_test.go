package pgha

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/pgha/endpoint"
)

// The endpoint proxy is what the controller repoints.
var _ Endpoint = (*endpoint.Proxy)(nil)

func TestHBA(t *testing.T) {
	got := HBA(HBAConfig{AppDatabase: "courses",
		AppNetworks:      []netip.Prefix{netip.MustParsePrefix("127.0.1.0/24")},
		ReplicationPeers: []netip.Prefix{netip.MustParsePrefix("198.18.2.10/32")}})
	var lines []string
	for _, l := range strings.Split(got, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	want := []string{
		"local all postgres peer map=operator",
		"local replication postgres peer map=operator",
		"hostssl replication replicator 198.18.2.10/32 cert",
		"host replication all all reject",
		"host all postgres all reject",
		"host all replicator all reject",
		"host courses all 127.0.1.0/24 scram-sha-256",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("HBA =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(got, "trust") || strings.Contains(got, "password") || strings.Contains(got, " md5") {
		t.Errorf("a line logs in without a proper credential:\n%s", got)
	}
	ident := Ident(HBAConfig{OperatorUsers: []string{"postgres", "root", "postgres"}})
	if !strings.Contains(ident, "operator  postgres  postgres\n") || !strings.Contains(ident, "operator  root  postgres\n") || strings.Count(ident, "operator") != 2 {
		t.Errorf("Ident =\n%s", ident)
	}
}

// Replication peers are the nodes' addresses; 127.0.0.1 only when nodes
// share the host's loopback (the kernel's source address there).
func TestReplicationPeers(t *testing.T) {
	ns := func(addrs ...string) []Node {
		var out []Node
		for _, a := range addrs {
			out = append(out, Node{ListenAddr: netip.MustParseAddr(a)})
		}
		return out
	}
	for _, tc := range []struct {
		nodes []Node
		want  string
	}{
		{ns("198.18.1.10", "198.18.2.10"), "[198.18.1.10/32 198.18.2.10/32]"},
		{ns("127.0.1.250", "127.0.2.250"), "[127.0.1.250/32 127.0.2.250/32 127.0.0.1/32]"},
	} {
		if got := fmt.Sprint(ReplicationPeers(tc.nodes)); got != tc.want {
			t.Errorf("ReplicationPeers = %s, want %s", got, tc.want)
		}
	}
}

func TestStandbyConnectsWithTLSAndACertificate(t *testing.T) {
	a := Node{Name: "db_a", ListenAddr: netip.MustParseAddr("127.0.1.250"), Port: 5433, DataDir: "/pg/db/db_a/data"}
	b := Node{Name: "db_b", ListenAddr: netip.MustParseAddr("127.0.2.250"), Port: 5433, DataDir: "/pg/db/db_b/data"}
	got := replConnInfo(a, b)
	for _, want := range []string{"host=127.0.1.250", "user=replicator", "application_name=db_b", "sslmode=verify-full",
		"sslrootcert=/pg/db/db_b/tls/root.crt", "sslcert=/pg/db/db_b/tls/replication.crt", "sslkey=/pg/db/db_b/tls/replication.key"} {
		if !strings.Contains(got, want) {
			t.Errorf("primary_conninfo %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "password") {
		t.Errorf("primary_conninfo holds a password: %q", got)
	}
	conf := autoConf(serverSettings(a, runConfig{tls: true}))
	for _, want := range []string{"ssl = 'on'", "ssl_cert_file = '/pg/db/db_a/tls/server.crt'", "ssl_key_file = '/pg/db/db_a/tls/server.key'", "ssl_ca_file = '/pg/db/db_a/tls/root.crt'"} {
		if !strings.Contains(conf, want) {
			t.Errorf("server settings lack %q:\n%s", want, conf)
		}
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
