package pgha

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
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
	cmd.Env = append(os.Environ(), "PGPASSWORD="+testPassword) // the benchmark's throwaway role
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
// a single primary directly, through the NAT endpoint (nftables DNAT) and
// through the userspace Proxy, interleaved (three rounds, each in a rotated
// order), and reports each endpoint's
// share of direct throughput. Run with
//
//	go test -run '^$' -bench EndpointPgbench -benchtime 1x ./internal/pgha/
func BenchmarkEndpointPgbench(b *testing.B) { benchEndpoint(b, 1) }

// BenchmarkEndpointPgbenchSyncPair is the same against a primary with a
// synchronous standby, as the region runs it.
func BenchmarkEndpointPgbenchSyncPair(b *testing.B) { benchEndpoint(b, 2) }

var _ Endpoint = (*endpoint.NAT)(nil)

// fanout repoints several endpoints at once, so one cluster drives both.
type fanout []Endpoint

func (f fanout) SetTarget(epoch uint64, addr string) {
	for _, e := range f {
		e.SetTarget(epoch, addr)
	}
}

func (f fanout) Pause() {
	for _, e := range f {
		e.Pause()
	}
}

func benchEndpoint(b *testing.B, nodes int) {
	dir := testDir(b)
	ctx := context.Background()
	proxy, err := endpoint.New(endpoint.Config{Listen: "127.0.0.1:0", Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	if err := proxy.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer proxy.Stop(ctx)
	if err := endpoint.NATAvailable(ctx); err != nil {
		b.Fatal(err)
	}
	nat, err := endpoint.NewNAT(endpoint.NATConfig{Listen: "127.0.0.1:" + strconv.Itoa(freeBenchPort(b)),
		Table: endpoint.NATTableName(dir), Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	if err := nat.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer nat.Stop(ctx)
	cfg := Config{Nodes: testNodes(b, dir, nodes), StateFile: filepath.Join(dir, "state.json"), Endpoint: fanout{proxy, nat}, Logger: discardLogger()}
	c := startTestCluster(b, cfg)
	if nodes == 2 {
		waitEligible(b, c)
	}
	bootstrapWithPassword(b, c, "bench", "bench")
	primary := cfg.Nodes[0]
	pgbench(ctx, b, primary.ListenAddr.String(), primary.Port, "-i", "-q", "-s", "2")
	port := func(addr string) int {
		_, p, _ := strings.Cut(addr, ":")
		n, _ := strconv.Atoi(p)
		return n
	}
	paths := []struct {
		name string
		host string
		port int
	}{
		{"direct", primary.ListenAddr.String(), primary.Port},
		{"nat", "127.0.0.1", port(nat.Addr())},
		{"proxy", "127.0.0.1", port(proxy.Addr())},
	}

	const rounds, dur = 3, "5"
	modes := []struct {
		name string
		args []string
	}{{"select-only", []string{"-S"}}, {"tpcb-like", nil}}
	sum := map[string]float64{}
	for round := 0; round < rounds; round++ {
		for _, m := range modes {
			args := append([]string{"-c", "4", "-j", "2", "-T", dur}, m.args...)
			tps := map[string]float64{}
			for i := range paths { // rotate the order: no path always runs first
				p := paths[(i+round)%len(paths)]
				tps[p.name] = pgbench(ctx, b, p.host, p.port, args...)
				sum[m.name+"/"+p.name] += tps[p.name]
			}
			b.Logf("round %d %-11s direct %8.0f tps  nat %8.0f tps (%.3f)  proxy %8.0f tps (%.3f)", round+1, m.name,
				tps["direct"], tps["nat"], tps["nat"]/tps["direct"], tps["proxy"], tps["proxy"]/tps["direct"])
		}
	}
	for _, m := range modes {
		d := sum[m.name+"/direct"] / rounds
		n := sum[m.name+"/nat"] / rounds
		p := sum[m.name+"/proxy"] / rounds
		b.ReportMetric(d, m.name+"-direct-tps")
		b.ReportMetric(n, m.name+"-nat-tps")
		b.ReportMetric(p, m.name+"-proxy-tps")
		b.ReportMetric(n/d, m.name+"-nat-ratio")
		b.ReportMetric(p/d, m.name+"-proxy-ratio")
		fmt.Printf("nodes=%d %s: direct %.0f tps, nat %.0f tps (nat/direct %.3f), proxy %.0f tps (proxy/direct %.3f)\n",
			nodes, m.name, d, n, n/d, p, p/d)
	}
}

// freeBenchPort returns a loopback port nothing listens on at the moment.
func freeBenchPort(b *testing.B) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
