package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/logs"
	"github.com/haven-platform/haven/internal/report"
	"github.com/haven-platform/haven/internal/termsafe"
)

func newAlarmsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "alarms",
		Short: "Show every alarm: its state (OK, ALARM, INSUFFICIENT_DATA), since when, why, undelivered notifications and its runbook",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st alarms.Status
			if err := g.client().Do(cmd.Context(), http.MethodGet, "/v1/alarms", nil, &st); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			printAlarms(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	var histJSON bool
	history := &cobra.Command{
		Use:   "history NAME",
		Short: "Show an alarm's history, newest first: state changes with their reasons, and each notification's delivery attempts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			var items []alarms.HistoryItem
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/alarms/"+args[0]+"/history", nil, &items); err != nil {
				return err
			}
			if histJSON {
				return writeJSON(cmd.OutOrStdout(), items)
			}
			var st alarms.Status
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/alarms", nil, &st); err == nil {
				for _, a := range st.Alarms {
					if a.Definition.Name == args[0] {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: %s since %s; runbook %s\n", a.Definition.Name, a.State, a.StateUpdated.UTC().Format(time.RFC3339), runbookOf(a.Definition))
					}
				}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tTYPE\tSUMMARY\tDETAIL")
			for _, h := range items {
				detail := h.Reason
				if h.Type == alarms.HistoryAction {
					detail = h.Receipt
					if h.Error != "" {
						detail = "error: " + h.Error
					}
				}
				// A webhook's error text comes from the far end: one row a line.
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Time.UTC().Format("2006-01-02 15:04:05Z"), h.Type, termsafe.String(h.Summary), termsafe.String(detail))
			}
			return tw.Flush()
		},
	}
	history.Flags().BoolVar(&histJSON, "json", false, "print as JSON")
	cmd.AddCommand(history)
	return cmd
}

func runbookOf(d alarms.Definition) string {
	if d.Runbook == "" {
		return "(none)"
	}
	return d.Runbook
}

func printAlarms(w io.Writer, st alarms.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALARM\tSTATE\tSINCE\tCONDITION\tPENDING\tRUNBOOK")
	for _, a := range st.Alarms {
		d := a.Definition
		cond := fmt.Sprintf("%s %s %s %g, %d of %d × %s", d.Metric, d.Statistic, comparisonWord(d.Comparison), d.Threshold, d.DatapointsToAlarm, d.EvaluationPeriods, d.Period)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.Name, a.State, a.StateUpdated.UTC().Format("15:04:05Z"), cond, a.Pending, runbookOf(d))
	}
	tw.Flush()
	for _, a := range st.Alarms {
		if a.State == alarms.StateAlarm {
			fmt.Fprintf(w, "\n%s is in ALARM: %s\n  runbook: %s · history: haven alarms history %s\n", a.Definition.Name, a.Reason, runbookOf(a.Definition), a.Definition.Name)
		}
		if a.LastError != "" {
			fmt.Fprintf(w, "\n%s: cannot read its metric: %s\n", a.Definition.Name, a.LastError)
		}
	}
	for _, d := range st.Outbox {
		if d.LastError != "" {
			fmt.Fprintf(w, "\nundelivered: %s → %s for %s (%s → %s), %d attempts, next %s: %s\n", d.Alarm, d.Action, d.Alarm,
				d.Notification.OldStateValue, d.Notification.NewStateValue, d.Attempts, d.NextAttempt.UTC().Format("15:04:05Z"), termsafe.String(d.LastError))
		}
	}
	if st.SaveError != "" {
		fmt.Fprintf(w, "\nthe alarm state cannot be saved (notifications wait): %s\n", st.SaveError)
	}
}

func comparisonWord(c alarms.Comparison) string {
	switch c {
	case alarms.GreaterThanThreshold:
		return ">"
	case alarms.GreaterThanOrEqualToThreshold:
		return ">="
	case alarms.LessThanThreshold:
		return "<"
	case alarms.LessThanOrEqualToThreshold:
		return "<="
	}
	return string(c)
}

func newLogsCmd(g *globals) *cobra.Command {
	var follow bool
	var since string
	cmd := &cobra.Command{
		Use:   "logs TARGET",
		Short: "Print a log as JSON lines, one component key each: daemon, lb (access log), db, db_a, an instance id (i-…), release, events",
		Long: `Print a log as JSON lines, each with exactly one "component" key, whatever the file holds:
the daemon's own log, the load balancer's access log (lb), a database node's PostgreSQL log
(db for every node, db_a for one), an instance's output (its id, i-…), the release task's output,
or the event log. Lines that are not JSON (PostgreSQL's, an app's prints) are wrapped as
{"time", "component", "msg"}. The files are read from the state dir: it works when the daemon is down.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcs, err := logs.Resolve(g.dir(), args[0])
			if err != nil {
				return err
			}
			o := logs.Options{Follow: follow}
			if since != "" {
				if o.Since, err = parseSince(since, time.Now()); err != nil {
					return err
				}
			}
			return logs.Read(cmd.Context(), cmd.OutOrStdout(), srcs, o)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	cmd.Flags().StringVar(&since, "since", "", "only lines at or after this: a duration back from now (10m) or an RFC 3339 time")
	return cmd
}

// parseSince reads --since: a duration back from now, or a time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since: must be a duration such as 10m or a time such as 2026-11-30T07:00:00Z, got %q", s)
}

func newConsoleCmd(g *globals) *cobra.Command {
	var noOpen bool
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Print a one-time login link to the region's web console (and open it when a browser is available)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.client().ConsoleLogin(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), l.URL)
			fmt.Fprintln(cmd.ErrOrStderr(), "haven: the link works once, within 2 minutes, and signs that browser in for 12 hours")
			if !noOpen {
				if opener := browserOpener(); opener != "" {
					c := exec.Command(opener, l.URL)
					c.Stdout, c.Stderr = io.Discard, io.Discard
					if err := c.Start(); err == nil {
						go c.Wait()
						fmt.Fprintf(cmd.ErrOrStderr(), "haven: opened it with %s\n", opener)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noOpen, "no-open", false, "only print the link")
	return cmd
}

// browserOpener is the program that opens a URL in the desktop's browser,
// "" when there is no desktop (no display, or over ssh).
func browserOpener() string {
	if runtime.GOOS == "darwin" {
		return "open"
	}
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return ""
	}
	if p, err := exec.LookPath("xdg-open"); err == nil {
		return p
	}
	return ""
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print haven's version (drill reports carry it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := map[string]string{"version": drill.HavenVersion(), "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "haven %s (%s, %s/%s)\n", v["version"], v["go"], v["os"], v["arch"])
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newDrillReportsCmd(g *globals) *cobra.Command {
	var asJSON bool
	var html string
	cmd := &cobra.Command{
		Use:   "reports [ID]",
		Short: "List the saved drill reports, or print one (--report FILE.html renders it with its charts)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store := drill.ReportStore{Dir: filepath.Join(g.dir(), "drills")}
			if len(args) == 0 {
				if html != "" {
					return errors.New("--report needs the ID of a report: `haven drill reports` lists them")
				}
				l, err := store.List()
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), l)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tDRILL\tSTARTED\tTOOK\tVERDICT\tHAVEN")
				for _, r := range l {
					verdict := "PASS"
					if !r.Pass {
						verdict = "FAIL"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Drill, r.StartedAt.UTC().Format(time.RFC3339), r.EndedAt.Sub(r.StartedAt).Round(time.Second), verdict, r.HavenVersion)
				}
				return tw.Flush()
			}
			raw, err := store.Read(args[0])
			if err != nil {
				return err
			}
			if html == "" {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			r, err := drill.Render(raw)
			if err != nil {
				return err
			}
			r.Generated = time.Now()
			if err := report.WriteFile(html, r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "haven: wrote %s\n", html)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "list as JSON")
	cmd.Flags().StringVar(&html, "report", "", "render the report as a self-contained HTML file with its charts")
	return cmd
}

// saveReport keeps a drill's report in the region's state dir, through
// the daemon; it says so on stderr, and a failure to save does not fail
// the drill.
func saveReport(c *api.Client, rep any) {
	stderr := termsafe.Writer(os.Stderr)
	raw, err := json.Marshal(rep)
	if err == nil {
		var info drill.ReportInfo
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err = c.Do(ctx, http.MethodPost, "/v1/drills/reports", json.RawMessage(raw), &info); err == nil {
			fmt.Fprintf(stderr, "haven: report saved as %s (haven drill reports %s --report %s.html)\n", info.ID, info.ID, info.ID)
			return
		}
	}
	fmt.Fprintf(stderr, "haven: the report was not saved: %v\n", strings.TrimSpace(err.Error()))
}
