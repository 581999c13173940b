package pgha

import (
	"bytes"
	"context"
	"fmt"
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
// a single primary directly and through the endpoint, interleaved, and
// reports the endpoint's share of direct throughput. Run with
//
//	go test -run '^$' -bench EndpointPgbench -benchtime 1x ./internal/pgha/
func BenchmarkEndpointPgbench(b *testing.B) { benchEndpoint(b, 1) }

// BenchmarkEndpointPgbenchSyncPair is the same against a primary with a
// synchronous standby, as the region runs it.
func BenchmarkEndpointPgbenchSyncPair(b *testing.B) { benchEndpoint(b, 2) }

func benchEndpoint(b *testing.B, nodes int) {
	dir := testDir(b)
	ep, err := endpoint.New(endpoint.Config{Listen: "127.0.0.1:0", Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := ep.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer ep.Stop(ctx)
	cfg := Config{Nodes: testNodes(b, dir, nodes), StateFile: filepath.Join(dir, "state.json"), Endpoint: ep, Logger: discardLogger()}
	c := startTestCluster(b, cfg)
	if nodes == 2 {
		waitEligible(b, c)
	}
	if err := c.Bootstrap(ctx, "bench", "bench"); err != nil {
		b.Fatal(err)
	}
	primary := cfg.Nodes[0]
	pgbench(ctx, b, primary.ListenAddr.String(), primary.Port, "-i", "-q", "-s", "2")
	_, epPortStr, _ := strings.Cut(ep.Addr(), ":")
	epPort, _ := strconv.Atoi(epPortStr)

	const rounds, dur = 2, "5"
	modes := []struct {
		name string
		args []string
	}{{"select-only", []string{"-S"}}, {"tpcb-like", nil}}
	sum := map[string]float64{}
	for round := 0; round < rounds; round++ {
		for _, m := range modes {
			args := append([]string{"-c", "4", "-j", "2", "-T", dur}, m.args...)
			d := pgbench(ctx, b, primary.ListenAddr.String(), primary.Port, args...)
			e := pgbench(ctx, b, "127.0.0.1", epPort, args...)
			b.Logf("round %d %-11s direct %8.0f tps  endpoint %8.0f tps  ratio %.3f", round+1, m.name, d, e, e/d)
			sum[m.name+"/direct"] += d
			sum[m.name+"/endpoint"] += e
		}
	}
	for _, m := range modes {
		d, e := sum[m.name+"/direct"]/rounds, sum[m.name+"/endpoint"]/rounds
		b.ReportMetric(d, m.name+"-direct-tps")
		b.ReportMetric(e, m.name+"-endpoint-tps")
		b.ReportMetric(e/d, m.name+"-ratio")
		fmt.Printf("nodes=%d %s: direct %.0f tps, endpoint %.0f tps, endpoint/direct %.3f\n", nodes, m.name, d, e, e/d)
	}
}
