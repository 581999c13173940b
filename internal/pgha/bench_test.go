package pgha

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/pgha/endpoint"
)

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

func pgbench(ctx context.Context, b *testing.B, host string, port int, args ...string) float64 {
	b.Helper()
	all := append([]string{"-h", host, "-p", strconv.Itoa(port), "-U", "bench", "-n"}, args...)
	all = append(all, "bench")
	cmd := exec.CommandContext(ctx, filepath.Join(DefaultBinDir, "pgbench"), all...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("pgbench %v: %v\n%s", args, err, out.String())
	}
	if args[0] == "-i" {
		return 0
	}
	m := tpsRE.FindStringSubmatch(out.String())
	if m == nil {
		b.Fatalf("no tps in pgbench output:\n%s", out.String())
	}
	tps, _ := strconv.ParseFloat(m[1], 64)
	return tps
}

// BenchmarkEndpointPgbench runs pgbench select-only and tpcb-like against
// the primary directly and through the endpoint, interleaved, and reports
// the endpoint's share of direct throughput. Run with
//
//	go test -run '^$' -bench EndpointPgbench -benchtime 1x ./internal/pgha/
func BenchmarkEndpointPgbench(b *testing.B) {
	dir := testDir(b)
	addr := netip.MustParseAddr("127.0.1.250")
	nodes := []Node{{Name: "db-a", Zone: "a", ListenAddr: addr, Port: freePort(b, addr),
		DataDir: filepath.Join(dir, "db-a", "data"), SocketDir: filepath.Join(dir, "db-a", "sock"), LogFile: filepath.Join(dir, "db-a.log")}}
	ep, err := endpoint.New(endpoint.Config{Listen: "127.0.0.1:0", Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := ep.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer ep.Stop(ctx)
	c, err := New(Config{Nodes: nodes, StateFile: filepath.Join(dir, "state.json"), Endpoint: ep, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Kill()
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	if err := c.Bootstrap(ctx, "bench", "bench"); err != nil {
		b.Fatal(err)
	}
	pgbench(ctx, b, addr.String(), nodes[0].Port, "-i", "-q", "-s", "2")
	_, epPortStr, _ := strings.Cut(ep.Addr(), ":")
	epPort, _ := strconv.Atoi(epPortStr)

	dur := "5"
	modes := []struct {
		name string
		args []string
	}{{"select-only", []string{"-S"}}, {"tpcb-like", nil}}
	sum := map[string]float64{}
	for round := 0; round < 2; round++ {
		for _, m := range modes {
			args := append([]string{"-c", "4", "-j", "2", "-T", dur}, m.args...)
			d := pgbench(ctx, b, addr.String(), nodes[0].Port, args...)
			e := pgbench(ctx, b, "127.0.0.1", epPort, args...)
			b.Logf("round %d %-11s direct %8.0f tps  endpoint %8.0f tps  ratio %.3f", round+1, m.name, d, e, e/d)
			sum[m.name+"/direct"] += d
			sum[m.name+"/endpoint"] += e
		}
	}
	for _, m := range modes {
		d, e := sum[m.name+"/direct"]/2, sum[m.name+"/endpoint"]/2
		b.ReportMetric(d, m.name+"-direct-tps")
		b.ReportMetric(e, m.name+"-endpoint-tps")
		b.ReportMetric(e/d, m.name+"-ratio")
		fmt.Printf("%s: direct %.0f tps, endpoint %.0f tps, endpoint/direct %.3f\n", m.name, d, e, e/d)
	}
}
