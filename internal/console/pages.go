package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/metrics"
	"github.com/haven-platform/haven/internal/report"
)

//go:embed static
var static embed.FS

func staticFS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	return sub
}

// nav is the console's menu, in order.
var nav = []struct{ Path, Label string }{
	{"/", "Region map"}, {"/charts", "Live charts"}, {"/events", "Events"}, {"/alarms", "Alarms"}, {"/reports", "Drill reports"},
}

type navItem struct {
	Path, Label string
	Current     bool
}

// pageData is what the layout renders.
type pageData struct {
	Title   string
	Region  string
	NoNav   bool
	Nav     []navItem
	Content template.HTML
}

var layout = template.Must(template.New("layout").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}{{with .Region}} · {{.}}{{end}} · haven console</title>
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
<p class="brand">haven console{{with .Region}} · region <strong>{{.}}</strong>{{end}}</p>
{{if not .NoNav}}<nav aria-label="Console"><ul>
{{range .Nav}}<li><a href="{{.Path}}"{{if .Current}} aria-current="page"{{end}}>{{.Label}}</a></li>
{{end}}</ul></nav>{{end}}
</header>
<main id="main">
<h1>{{.Title}}</h1>
{{.Content}}
</main>
</body>
</html>
`))

func renderPage(w http.ResponseWriter, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := layout.Execute(w, d); err != nil {
		fmt.Fprintf(w, "<p>render error: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

func signInHelp(why string) template.HTML {
	var b strings.Builder
	if why != "" {
		fmt.Fprintf(&b, "<p class=\"problem\">%s</p>", template.HTMLEscapeString(why))
	}
	b.WriteString(`<p>The console is for the region's operator. Run <code>haven console</code> on this machine: it prints a one-time link (and opens it when a browser is available) that signs this browser in for 12 hours.</p>`)
	return template.HTML(b.String())
}

func (c *Console) page(w http.ResponseWriter, r *http.Request, title string, content template.HTML) {
	d := pageData{Title: title, Region: c.cfg.Region.Status().Region, Content: content}
	for _, n := range nav {
		d.Nav = append(d.Nav, navItem{Path: n.Path, Label: n.Label, Current: n.Path == r.URL.Path || (n.Path != "/" && strings.HasPrefix(r.URL.Path, n.Path+"/"))})
	}
	renderPage(w, d)
}

func fragment(w http.ResponseWriter, h template.HTML) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(h))
}

func (c *Console) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		c.page(w, r, "Region map", live("/fragment/map", c.mapHTML()))
	})
	mux.HandleFunc("GET /fragment/map", func(w http.ResponseWriter, r *http.Request) { fragment(w, c.mapHTML()) })
	mux.HandleFunc("GET /charts", func(w http.ResponseWriter, r *http.Request) {
		c.page(w, r, "Live charts", live("/fragment/charts", c.chartsHTML()))
	})
	mux.HandleFunc("GET /fragment/charts", func(w http.ResponseWriter, r *http.Request) { fragment(w, c.chartsHTML()) })
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		c.page(w, r, "Events", c.eventsHTML(r))
	})
	mux.HandleFunc("GET /alarms", func(w http.ResponseWriter, r *http.Request) {
		c.page(w, r, "Alarms", live("/fragment/alarms", c.alarmsHTML()))
	})
	mux.HandleFunc("GET /fragment/alarms", func(w http.ResponseWriter, r *http.Request) { fragment(w, c.alarmsHTML()) })
	mux.HandleFunc("GET /alarms/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		h, err := c.alarmHistoryHTML(name)
		if err != nil {
			w.WriteHeader(http.StatusNotFound)
		}
		c.page(w, r, "Alarm "+name, h)
	})
	mux.HandleFunc("GET /reports", func(w http.ResponseWriter, r *http.Request) {
		c.page(w, r, "Drill reports", c.reportsHTML())
	})
	mux.HandleFunc("GET /reports/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if raw, ok := strings.CutSuffix(id, ".json"); ok {
			b, err := c.cfg.Region.Reports().Read(raw)
			if err != nil {
				http.Error(w, "404 Not Found: "+err.Error(), http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
			return
		}
		title, h, err := c.reportHTML(id)
		if err != nil {
			w.WriteHeader(http.StatusNotFound)
			title = "Drill report"
		}
		c.page(w, r, title, h)
	})
}

// live wraps a fragment the page's script refreshes every 2 s.
func live(url string, h template.HTML) template.HTML {
	return template.HTML(`<div class="live" data-refresh="` + template.HTMLEscapeString(url) + `">` + string(h) + `</div>`)
}

func exec(t *template.Template, data any) template.HTML {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return template.HTML("<p class=\"problem\">render error: " + template.HTMLEscapeString(err.Error()) + "</p>")
	}
	return template.HTML(b.String())
}

// ---- the region map ----

type mapZone struct {
	api.Zone
	Subnets   []string
	Instances []api.Instance
	DBNodes   []api.DBNodeStatus
}

type mapData struct {
	Status  api.Status
	DB      api.DBStatus
	HasDB   bool
	Zones   []mapZone
	Updated string
	Target  string // the endpoint's current target
}

var mapTmpl = template.Must(template.New("map").Funcs(funcs).Parse(`
<p class="updated">Phase <strong>{{.Status.Phase}}</strong> · network {{.Status.Network.Mode}} · updated {{.Updated}}</p>
{{with .Status.Error}}<p class="problem">{{.}}</p>{{end}}
<section aria-labelledby="endpoints-h">
<h2 id="endpoints-h">Endpoints</h2>
<dl class="endpoints">
<dt>Load balancer</dt><dd>{{or .Status.Endpoints.HTTPS "not running"}} · {{.Status.Fleet.Healthy}} healthy of {{.Status.Fleet.Desired}} desired (min {{.Status.Fleet.Min}}, max {{.Status.Fleet.Max}})</dd>
<dt>Database endpoint</dt><dd id="db-endpoint" data-target="{{.DB.Primary}}" data-epoch="{{.DB.Epoch}}">{{.Status.Endpoints.Database}}{{if .HasDB}} → <strong>{{.Target}}</strong> (primary {{.DB.Primary}}, epoch {{.DB.Epoch}}, endpoint epoch {{.DB.EndpointEpoch}}){{else}} · database not running{{end}}</dd>
{{if .HasDB}}<dt>Replication</dt><dd>standby {{or .DB.Standby "none"}} · {{.DB.ReplicationState}}, sync state {{.DB.SyncState}}, lag {{.DB.LagBytes}} bytes / {{printf "%.3f" .DB.LagSeconds}} s · {{if .DB.StandbyEligible}}eligible for promotion{{else}}not eligible{{end}}</dd>{{end}}
</dl>
</section>
<div class="zones">
{{range .Zones}}<section class="zone" aria-labelledby="zone-{{.Name}}-h">
<h2 id="zone-{{.Name}}-h">Zone {{.Name}} <span class="az">({{.AZ}})</span>{{with .Fault}} <span class="badge bad">{{.}}</span>{{end}}{{if .Impaired}} <span class="badge warn">impaired</span>{{end}}</h2>
<p class="subnets">{{if .Subnets}}{{range $i, $s := .Subnets}}{{if $i}} · {{end}}{{$s}}{{end}}{{else}}{{.CIDR}}{{end}}</p>
<h3>Database</h3>
{{if .DBNodes}}<ul class="dbnodes">{{range .DBNodes}}<li class="dbnode role-{{.Role}}" data-node="{{.Name}}" data-role="{{.Role}}"><strong>{{.Name}}</strong> <span class="badge {{roleClass .Role}}">{{.Role}}</span> {{.Health}} · {{.Address}}</li>{{end}}</ul>
{{else}}<p>No database node.</p>{{end}}
<h3>Instances</h3>
{{if .Instances}}<table class="instances"><caption class="sr">Instances in zone {{.Name}}</caption>
<thead><tr><th scope="col">instance</th><th scope="col">address</th><th scope="col">state</th><th scope="col">target</th></tr></thead><tbody>
{{range .Instances}}<tr data-instance="{{.ID}}"><td>{{.ID}}</td><td>{{.Address}}</td><td>{{.State}}</td><td><span class="badge {{targetClass .Target}}">{{or .Target "unregistered"}}</span></td></tr>
{{end}}</tbody></table>{{else}}<p>No instance.</p>{{end}}
</section>
{{end}}</div>
`))

var funcs = template.FuncMap{
	"roleClass": func(r string) string {
		switch r {
		case "primary":
			return "good"
		case "standby":
			return "info"
		case "down":
			return "bad"
		}
		return "warn"
	},
	"targetClass": func(s string) string {
		switch s {
		case "healthy":
			return "good"
		case "unhealthy":
			return "bad"
		}
		return "warn"
	},
	"stateClass": func(s alarms.State) string {
		switch s {
		case alarms.StateOK:
			return "good"
		case alarms.StateAlarm:
			return "bad"
		}
		return "warn"
	},
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"attrs": func(m map[string]any) string {
		if len(m) == 0 {
			return ""
		}
		b, _ := json.Marshal(m)
		return string(b)
	},
}

func (c *Console) mapHTML() template.HTML {
	st := c.cfg.Region.Status()
	db, hasDB := c.cfg.Region.DB()
	d := mapData{Status: st, DB: db, HasDB: hasDB, Updated: time.Now().UTC().Format("15:04:05Z")}
	for _, n := range db.Nodes {
		if n.Name == db.Primary {
			d.Target = n.Name + " at " + n.Address
		}
	}
	for _, z := range st.Zones {
		mz := mapZone{Zone: z}
		tiers := make([]string, 0, len(z.Subnets))
		for t := range z.Subnets {
			tiers = append(tiers, t)
		}
		sort.Strings(tiers)
		for _, t := range tiers {
			mz.Subnets = append(mz.Subnets, t+" "+z.Subnets[t])
		}
		for _, in := range st.Instances {
			if in.Zone == z.Name {
				mz.Instances = append(mz.Instances, in)
			}
		}
		for _, n := range db.Nodes {
			if n.Zone == z.Name {
				mz.DBNodes = append(mz.DBNodes, n)
			}
		}
		d.Zones = append(d.Zones, mz)
	}
	return exec(mapTmpl, d)
}

// ---- live charts ----

type chartBlock struct {
	ID, Title string
	SVG       template.HTML
}

var chartsTmpl = template.Must(template.New("charts").Parse(`
<p class="updated">The last {{.Span}} sampled every second; x in seconds ago. Updated {{.Updated}}.</p>
{{if not .Charts}}<p>No samples yet.</p>{{end}}
<div class="charts">
{{range .Charts}}<section class="chart-block" aria-labelledby="{{.ID}}-h"><h2 id="{{.ID}}-h">{{.Title}}</h2>{{.SVG}}</section>
{{end}}</div>
`))

func (c *Console) chartsHTML() template.HTML {
	pts := c.cfg.Region.Series()
	data := struct {
		Span, Updated string
		Charts        []chartBlock
	}{Span: "15 minutes", Updated: time.Now().UTC().Format("15:04:05Z")}
	if len(pts) > 0 {
		now := pts[len(pts)-1].Time
		data.Span = now.Sub(pts[0].Time).Round(time.Second).String()
		series := func(f func(metrics.Point) float64) []report.Point {
			out := make([]report.Point, 0, len(pts))
			for _, p := range pts {
				out = append(out, report.Point{X: -now.Sub(p.Time).Seconds(), Y: f(p)})
			}
			return out
		}
		charts := []struct {
			id    string
			chart report.Chart
		}{
			{"requests", report.Chart{Title: "Requests", Unit: "req/s", Series: []report.Series{{Name: "answered", Points: series(func(p metrics.Point) float64 { return p.Requests })}}}},
			{"errors", report.Chart{Title: "5xx responses", Unit: "per s", Series: []report.Series{{Name: "5xx", Points: series(func(p metrics.Point) float64 { return p.Errors5xx })}}}},
			{"p99", report.Chart{Title: "Target response time p99", Unit: "ms", Series: []report.Series{{Name: "p99", Points: series(func(p metrics.Point) float64 { return p.P99 * 1000 })}}}},
			{"instances", report.Chart{Title: "Instances", Unit: "count", Step: true, Series: []report.Series{
				{Name: "in service", Points: series(func(p metrics.Point) float64 { return p.InService })},
				{Name: "healthy targets", Points: series(func(p metrics.Point) float64 { return p.Healthy })}}}},
			{"cpu", report.Chart{Title: "Instance CPU", Unit: "% of quota", Series: []report.Series{{Name: "average", Points: series(func(p metrics.Point) float64 { return p.CPU })}}}},
			{"lag", report.Chart{Title: "Replication lag", Unit: "s", Series: []report.Series{{Name: "standby replay lag", Points: series(func(p metrics.Point) float64 { return p.ReplicationLag })}}}},
		}
		for _, ch := range charts {
			data.Charts = append(data.Charts, chartBlock{ID: "chart-" + ch.id, Title: ch.chart.Title, SVG: report.ChartSVG("chart-"+ch.id, ch.chart, nil)})
		}
	}
	return exec(chartsTmpl, data)
}

// ---- events ----

var eventsTmpl = template.Must(template.New("events").Funcs(funcs).Parse(`
<form class="filter" method="get" action="/events" aria-label="Filter events">
<label for="component">Component</label>
<select id="component" name="component">
<option value=""{{if eq .Component ""}} selected{{end}}>all</option>
{{range .Components}}<option value="{{.}}"{{if eq . $.Component}} selected{{end}}>{{.}}</option>{{end}}
</select>
<label for="kind">Kind contains</label>
<input id="kind" name="kind" type="text" value="{{.Kind}}">
<label for="since">Since</label>
<select id="since" name="since">
{{range .Sinces}}<option value="{{.}}"{{if eq . $.Since}} selected{{end}}>{{.}}</option>{{end}}
</select>
<button type="submit">Filter</button>
</form>
{{with .Problem}}<p class="problem">{{.}}</p>{{end}}
<p>{{len .Events}} events{{if .Truncated}} (the newest 500){{end}}, newest first.</p>
<table class="events"><caption class="sr">Events</caption>
<thead><tr><th scope="col">time</th><th scope="col">component</th><th scope="col">kind</th><th scope="col">subject</th><th scope="col">message</th></tr></thead><tbody>
{{range .Events}}<tr><td>{{ts .Time}}</td><td>{{.Component}}</td><td>{{.Kind}}</td><td>{{.Subject}}</td><td>{{.Message}}{{with attrs .Attrs}} <code>{{.}}</code>{{end}}</td></tr>
{{end}}</tbody></table>
`))

var sinces = []string{"all", "5m", "15m", "1h", "6h", "24h"}

func (c *Console) eventsHTML(r *http.Request) template.HTML {
	q := r.URL.Query()
	data := struct {
		Component, Kind, Since, Problem string
		Components, Sinces              []string
		Events                          []api.Event
		Truncated                       bool
	}{Component: q.Get("component"), Kind: q.Get("kind"), Since: q.Get("since"), Sinces: sinces}
	if data.Since == "" {
		data.Since = "1h"
	}
	eq := api.EventQuery{}
	if data.Since != "all" {
		d, err := time.ParseDuration(data.Since)
		if err != nil || !slices.Contains(sinces, data.Since) {
			data.Problem = fmt.Sprintf("since: must be one of %s, got %q", strings.Join(sinces, ", "), data.Since)
			data.Since = "1h"
			d = time.Hour
		}
		eq.Since = time.Now().Add(-d)
	}
	all := c.cfg.Region.Events(eq)
	seen := map[string]bool{}
	for _, e := range all {
		if !seen[e.Component] {
			seen[e.Component] = true
			data.Components = append(data.Components, e.Component)
		}
	}
	for _, comp := range []string{"alarms", "db", "fleet", "lb", "region", "secrets"} {
		if !seen[comp] {
			data.Components = append(data.Components, comp)
		}
	}
	sort.Strings(data.Components)
	for i := len(all) - 1; i >= 0; i-- {
		e := all[i]
		if (data.Component == "" || e.Component == data.Component) && (data.Kind == "" || strings.Contains(e.Kind, data.Kind)) {
			if len(data.Events) == 500 {
				data.Truncated = true
				break
			}
			data.Events = append(data.Events, e)
		}
	}
	return exec(eventsTmpl, data)
}

// ---- alarms ----

var alarmsTmpl = template.Must(template.New("alarms").Funcs(funcs).Parse(`
{{if not .Status}}<p>The alarms are not running yet: they start once the fleet is healthy.</p>{{else}}
<p class="updated">Evaluated {{ts .Status.Time}}.{{with .Status.SaveError}} <span class="problem">State not saved: {{.}}</span>{{end}}</p>
<table class="alarms"><caption class="sr">Alarms</caption>
<thead><tr><th scope="col">alarm</th><th scope="col">state</th><th scope="col">since</th><th scope="col">condition</th><th scope="col">reason</th><th scope="col">pending</th><th scope="col">runbook</th></tr></thead><tbody>
{{range .Status.Alarms}}<tr data-alarm="{{.Definition.Name}}" data-state="{{.State}}"><td><a href="/alarms/{{.Definition.Name}}">{{.Definition.Name}}</a></td>
<td><span class="badge {{stateClass .State}}">{{.State}}</span></td><td>{{ts .StateUpdated}}</td>
<td>{{.Definition.Metric}} {{.Definition.Statistic}} {{.Definition.Comparison}} {{.Definition.Threshold}} · {{.Definition.DatapointsToAlarm}} of {{.Definition.EvaluationPeriods}} × {{.Definition.Period}}</td>
<td>{{.Reason}}{{with .LastError}} <span class="problem">{{.}}</span>{{end}}</td><td>{{.Pending}}</td><td>{{with .Definition.Runbook}}<code>{{.}}</code>{{end}}</td></tr>
{{end}}</tbody></table>
{{if .Status.Outbox}}<h2>Notifications not yet delivered</h2>
<table class="outbox"><caption class="sr">Undelivered notifications</caption><thead><tr><th scope="col">alarm</th><th scope="col">action</th><th scope="col">transition</th><th scope="col">attempts</th><th scope="col">next attempt</th><th scope="col">last error</th></tr></thead><tbody>
{{range .Status.Outbox}}<tr><td>{{.Alarm}}</td><td>{{.Action}}</td><td>{{.Notification.OldStateValue}} → {{.Notification.NewStateValue}}</td><td>{{.Attempts}}</td><td>{{ts .NextAttempt}}</td><td>{{.LastError}}</td></tr>
{{end}}</tbody></table>{{end}}{{end}}
`))

func (c *Console) alarmsHTML() template.HTML {
	return exec(alarmsTmpl, struct{ Status *alarms.Status }{c.cfg.Region.Alarms()})
}

var historyTmpl = template.Must(template.New("history").Funcs(funcs).Parse(`
<p><a href="/alarms">All alarms</a>{{with .Runbook}} · runbook <code>{{.}}</code>{{end}}</p>
{{with .Current}}<p class="current" data-alarm="{{.Definition.Name}}" data-state="{{.State}}">Now <span class="badge {{stateClass .State}}">{{.State}}</span> since {{ts .StateUpdated}}: {{.Reason}}</p>{{end}}
{{with .Problem}}<p class="problem">{{.}}</p>{{else}}
<table class="history"><caption class="sr">History, newest first</caption>
<thead><tr><th scope="col">time</th><th scope="col">type</th><th scope="col">summary</th><th scope="col">details</th></tr></thead><tbody>
{{range .Items}}<tr{{if .NewState}} data-old-state="{{.OldState}}" data-new-state="{{.NewState}}"{{end}}><td>{{ts .Time}}</td><td>{{.Type}}</td><td>{{.Summary}}</td><td>{{with .Reason}}{{.}}{{end}}{{with .Receipt}}{{.}}{{end}}{{with .Error}}<span class="problem">{{.}}</span>{{end}}</td></tr>
{{end}}</tbody></table>{{end}}
`))

func (c *Console) alarmHistoryHTML(name string) (template.HTML, error) {
	items, err := c.cfg.Region.AlarmHistory(name)
	data := struct {
		Items            []alarms.HistoryItem
		Problem, Runbook string
		Current          *alarms.AlarmStatus
	}{Items: items}
	if err != nil {
		data.Problem = err.Error()
	}
	if st := c.cfg.Region.Alarms(); st != nil {
		for i, a := range st.Alarms {
			if a.Definition.Name == name {
				data.Runbook = a.Definition.Runbook
				data.Current = &st.Alarms[i]
			}
		}
	}
	return exec(historyTmpl, data), err
}

// ---- drill reports ----

var reportsTmpl = template.Must(template.New("reports").Funcs(funcs).Parse(`
{{with .Problem}}<p class="problem">{{.}}</p>{{end}}
{{if not .Reports}}<p>No drill report yet. Each <code>haven drill …</code> saves its report here.</p>{{else}}
<table class="reports"><caption class="sr">Drill reports, newest first</caption>
<thead><tr><th scope="col">report</th><th scope="col">drill</th><th scope="col">started</th><th scope="col">took</th><th scope="col">verdict</th><th scope="col">haven</th></tr></thead><tbody>
{{range .Reports}}<tr><td><a href="/reports/{{.ID}}">{{.ID}}</a></td><td>{{.Drill}}</td><td>{{ts .StartedAt}}</td><td>{{.EndedAt.Sub .StartedAt}}</td><td><span class="badge {{if .Pass}}good{{else}}bad{{end}}">{{if .Pass}}PASS{{else}}FAIL{{end}}</span></td><td>{{.HavenVersion}}</td></tr>
{{end}}</tbody></table>{{end}}
`))

func (c *Console) reportsHTML() template.HTML {
	l, err := c.cfg.Region.Reports().List()
	data := struct {
		Reports []drill.ReportInfo
		Problem string
	}{Reports: l}
	if err != nil {
		data.Problem = err.Error()
	}
	return exec(reportsTmpl, data)
}

var reportTmpl = template.Must(template.New("report").Parse(`
<p><a href="/reports">All reports</a> · <a href="/reports/{{.ID}}.json">JSON</a></p>
<p>{{.R.Subtitle}}</p>
{{if .R.Pass}}<p class="verdict {{.Verdict}}">{{if eq .Verdict "pass"}}PASS{{else}}FAIL{{end}}</p>{{end}}
<h2>Summary</h2>
<table class="summary"><caption class="sr">Summary</caption><tbody>
{{range .R.Summary}}<tr><th scope="row">{{.Label}}</th><td>{{.Value}}</td></tr>
{{end}}</tbody></table>
{{range .R.Tables}}<h2>{{.Title}}</h2>
<table><caption class="sr">{{.Title}}</caption><thead><tr>{{range .Columns}}<th scope="col">{{.}}</th>{{end}}</tr></thead><tbody>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody></table>
{{end}}
{{range .Charts}}<section class="chart-block" aria-labelledby="{{.ID}}-h"><h2 id="{{.ID}}-h">{{.Title}}</h2>{{.SVG}}</section>
{{end}}
`))

func (c *Console) reportHTML(id string) (string, template.HTML, error) {
	raw, err := c.cfg.Region.Reports().Read(id)
	if err != nil {
		return "", template.HTML("<p class=\"problem\">" + template.HTMLEscapeString(err.Error()) + "</p>"), err
	}
	r, err := drill.Render(raw)
	if err != nil {
		return "", template.HTML("<p class=\"problem\">" + template.HTMLEscapeString(err.Error()) + "</p>"), err
	}
	data := struct {
		ID      string
		R       report.Report
		Verdict string
		Charts  []chartBlock
	}{ID: id, R: r, Verdict: "fail"}
	if r.Pass != nil && *r.Pass {
		data.Verdict = "pass"
	}
	for i, ch := range r.Charts {
		cid := fmt.Sprintf("report-chart-%d", i)
		data.Charts = append(data.Charts, chartBlock{ID: cid, Title: ch.Title, SVG: report.ChartSVG(cid, ch, r.Events)})
	}
	return r.Title, exec(reportTmpl, data), nil
}
