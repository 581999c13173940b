package routes

import (
	"io"
	"net/http"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
)

// Alarms is what the alarm routes need of the engine (*alarms.Engine).
type Alarms interface {
	Status() *alarms.Status
	History(name string) ([]alarms.HistoryItem, error)
}

// Ops gives the operations routes their parts, each nil (or empty) until
// it runs.
type Ops interface {
	// Alarms is the alarm engine, nil before it runs.
	Alarms() Alarms
	// ConsoleLoginURL mints a one-time console login link.
	ConsoleLoginURL() (string, error)
	// Reports is where drill reports are kept.
	Reports() drill.ReportStore
}

// OpsRoutes adds the alarm, console and drill-report routes. The socket is
// 0600: they are operator-only.
func OpsRoutes(mux *http.ServeMux, o Ops, ev Events) {
	engine := func(w http.ResponseWriter) Alarms {
		a := o.Alarms()
		if a == nil {
			replyErr(w, 0, unavailable("the alarms are not running yet: they start once the fleet is healthy (`haven status`)"))
		}
		return a
	}
	mux.HandleFunc("GET /v1/alarms", func(w http.ResponseWriter, _ *http.Request) {
		if a := engine(w); a != nil {
			reply(w, http.StatusOK, a.Status())
		}
	})
	mux.HandleFunc("GET /v1/alarms/{name}/history", func(w http.ResponseWriter, req *http.Request) {
		a := engine(w)
		if a == nil {
			return
		}
		h, err := a.History(req.PathValue("name"))
		if err != nil {
			replyErr(w, http.StatusNotFound, err)
			return
		}
		reply(w, http.StatusOK, h)
	})
	mux.HandleFunc("POST /v1/console/login", func(w http.ResponseWriter, _ *http.Request) {
		u, err := o.ConsoleLoginURL()
		if err != nil {
			replyErr(w, http.StatusServiceUnavailable, err)
			return
		}
		ev.Add("console", "login-link", "", "a one-time console login link was issued")
		w.Header().Set("Cache-Control", "no-store")
		reply(w, http.StatusOK, api.ConsoleLogin{URL: u})
	})
	mux.HandleFunc("GET /v1/drills/reports", func(w http.ResponseWriter, _ *http.Request) {
		l, err := o.Reports().List()
		if err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		reply(w, http.StatusOK, l)
	})
	mux.HandleFunc("GET /v1/drills/reports/{id}", func(w http.ResponseWriter, req *http.Request) {
		b, err := o.Reports().Read(req.PathValue("id"))
		if err != nil {
			replyErr(w, http.StatusNotFound, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /v1/drills/reports", func(w http.ResponseWriter, req *http.Request) {
		raw, err := io.ReadAll(http.MaxBytesReader(w, req.Body, drill.MaxReportSize))
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		info, err := o.Reports().Save(raw)
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		ev.Add("drill", "report-saved", info.ID, info.Drill+" report saved")
		reply(w, http.StatusCreated, info)
	})
}
