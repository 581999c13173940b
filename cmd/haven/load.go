package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/report"
)

// loadFlags are `haven load`'s flags.
type loadFlags struct {
	profile  string
	rate     float64
	peak     float64
	duration time.Duration
	users    int
	timeout  time.Duration
	asJSON   bool
	report   string
	slo      time.Duration
}

// profile builds the named load profile from the flags.
func (f loadFlags) build() (load.Profile, error) {
	if !(f.rate > 0) || math.IsInf(f.rate, 0) {
		return load.Profile{}, fmt.Errorf("--rate: must be a number of requests per second above 0, got %g", f.rate)
	}
	if f.duration <= 0 {
		return load.Profile{}, fmt.Errorf("--duration: must be above 0, got %s", f.duration)
	}
	peak := f.peak
	if peak == 0 {
		peak = 8 * f.rate
	}
	if f.profile != "steady" && (!(peak > f.rate) || math.IsInf(peak, 0)) {
		return load.Profile{}, fmt.Errorf("--peak: must be above --rate (%g) for the %s profile, got %g", f.rate, f.profile, peak)
	}
	switch f.profile {
	case "steady":
		return load.Steady(f.rate, f.duration), nil
	case "ramp":
		return load.Ramp(f.rate, peak, f.duration), nil
	case "spike":
		q := f.duration / 4
		return load.Spike(f.rate, peak, q, f.duration-2*q, q), nil
	case "exam-week":
		return load.ExamWeek(f.rate, peak/f.rate, f.duration), nil
	}
	return load.Profile{}, fmt.Errorf("--profile %q: must be steady, ramp, spike or exam-week", f.profile)
}

func newLoadCmd(g *globals) *cobra.Command {
	var f loadFlags
	var wf workloadFlags
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Drive logged-in load through the load balancer on a fixed timeline (an open model) and record each second",
		Long: `Drive the workload's logged-in journeys through the load balancer. Requests start
on the profile's timeline whatever the answers do (an open model), and each one's
latency counts from the moment it was due. Each second records the rate, errors by
status, p50/p95/p99, and the fleet's instances in service and pending and average
CPU from the daemon.

Profiles (--rate is the base rate, --peak the top, default 8 × rate):
  steady     --rate for --duration
  ramp       --rate to --peak, linearly, over --duration
  spike      --rate for a quarter, --peak for half, --rate for the last quarter
  exam-week  one exam morning compressed into --duration: baseline 10 %, ramp 15 %,
             peak 45 %, ramp down 10 %, baseline 20 %`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prof, err := f.build()
			if err != nil {
				return err
			}
			w, err := wf.build()
			if err != nil {
				return err
			}
			c := g.client()
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			site, users, err := drill.OpenSite(cmd.Context(), st, f.users, w)
			if err != nil {
				return err
			}
			defer site.Close()
			cfg := load.Config{Profile: prof, Journey: drill.LoadJourney{Site: site, Users: users}, Timeout: f.timeout, Observe: drill.ObserveFleet(c),
				Logger: slog.New(slog.DiscardHandler)}
			if isTerminal(cmd.ErrOrStderr()) {
				cfg.Progress = cmd.ErrOrStderr()
			}
			res, err := load.Run(cmd.Context(), cfg)
			if res == nil {
				return err
			}
			if f.report != "" {
				rep := res.Report(fmt.Sprintf("haven load: %s on region %s", prof.Name, st.Region), float64(f.slo.Milliseconds()))
				if werr := report.WriteFile(f.report, rep); werr != nil {
					return werr
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", f.report)
			}
			if f.asJSON {
				if jerr := writeJSON(cmd.OutOrStdout(), res); jerr != nil {
					return jerr
				}
			} else {
				printLoad(cmd.OutOrStdout(), res)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&f.profile, "profile", "steady", "load shape: steady, ramp, spike or exam-week")
	cmd.Flags().Float64Var(&f.rate, "rate", 40, "requests per second (the base rate)")
	cmd.Flags().Float64Var(&f.peak, "peak", 0, "the peak rate of ramp, spike and exam-week (default 8 × --rate)")
	cmd.Flags().DurationVar(&f.duration, "duration", 60*time.Second, "how long requests start for")
	cmd.Flags().IntVar(&f.users, "users", 100, "seeded students to log in")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "a request that takes longer counts as a timeout")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the result as JSON, with the per-second timeline")
	cmd.Flags().StringVar(&f.report, "report", "", "also write a self-contained HTML report to this file")
	cmd.Flags().DurationVar(&f.slo, "slo-p99", 500*time.Millisecond, "the p99 objective drawn on the report's latency chart")
	wf.add(cmd.Flags())
	return cmd
}

func printLoad(w io.Writer, res *load.Result) {
	s := res.Summary
	fmt.Fprintf(w, "load %s: %d requests over %.0f s, %d ok, %d failed (%.3f %%)\n", res.Profile, s.Requests, res.DurationS, s.OK, s.Failed, 100*s.ErrorRate)
	var errs []string
	for k, v := range s.Errors {
		errs = append(errs, fmt.Sprintf("%s %d", k, v))
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "  errors: %s\n", strings.Join(errs, ", "))
	}
	fmt.Fprintf(w, "  latency p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms\n", s.P50MS, s.P95MS, s.P99MS, s.MaxMS)
	peak := 0
	for _, sec := range res.Timeline {
		if sec.InService != nil {
			peak = max(peak, *sec.InService)
		}
	}
	if peak > 0 {
		fmt.Fprintf(w, "  fleet: up to %d instances in service (--json has the per-second timeline)\n", peak)
	}
}

// isTerminal reports whether w is a terminal (the live progress line is
// drawn only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
