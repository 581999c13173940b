package lb

import (
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkProxyOverhead measures, in one run and side by side, throughput and
// latency of GETs sent by parallel keep-alive clients directly to a backend
// (plain HTTP) and through the LB (HTTPS, TLS terminated by the LB). Each mode
// sends b.N requests.
func BenchmarkProxyOverhead(b *testing.B) {
	const workers = 8
	body := []byte("hello from the backend, a small response body\n")
	backend := newBackend(b, "bench", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	l, lbClient := startLB(b, func(cfg *Config) {
		cfg.Logger = slog.New(slog.DiscardHandler)
		cfg.HealthCheck.Interval, cfg.HealthCheck.Timeout = time.Second, 500*time.Millisecond
		cfg.HealthCheck.HealthyThreshold = 1
	})
	register(b, l, "bench", "za", backend.addr())
	waitState(b, l, "bench", StateHealthy)
	lbClient.Transport.(*http.Transport).MaxIdleConnsPerHost = workers
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, Proxy: nil}}
	b.Cleanup(direct.CloseIdleConnections)

	run := func(c *http.Client, url string) (rps, p50, p99 float64) {
		// Warm the connection pools.
		for range workers {
			if resp, err := c.Get(url); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		lat := make([][]time.Duration, workers)
		var wg sync.WaitGroup
		start := time.Now()
		for w := range workers {
			n := b.N / workers
			if w < b.N%workers {
				n++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				lat[w] = make([]time.Duration, 0, n)
				for range n {
					t0 := time.Now()
					resp, err := c.Get(url)
					if err != nil {
						b.Errorf("GET %s: %v", url, err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("GET %s: status %d", url, resp.StatusCode)
						return
					}
					lat[w] = append(lat[w], time.Since(t0))
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		all := slices.Concat(lat...)
		if len(all) == 0 {
			return 0, 0, 0
		}
		slices.Sort(all)
		q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
		return float64(len(all)) / elapsed.Seconds(), q(0.50), q(0.99)
	}

	b.ResetTimer()
	dRPS, dP50, dP99 := run(direct, "http://"+backend.addr()+"/")
	lRPS, lP50, lP99 := run(lbClient, l.HTTPSURL()+"/")
	b.StopTimer()
	b.ReportMetric(dRPS, "direct-req/s")
	b.ReportMetric(dP50, "direct-p50-µs")
	b.ReportMetric(dP99, "direct-p99-µs")
	b.ReportMetric(lRPS, "lb-req/s")
	b.ReportMetric(lP50, "lb-p50-µs")
	b.ReportMetric(lP99, "lb-p99-µs")
}
