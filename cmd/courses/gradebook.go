package main

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// The gradebook: a teacher's view of a course's students × assignments,
// paged and searchable, with totals and averages, a CSV export and a form
// to edit one grade. It works at the size of the seed's large course (651
// students) and beyond: a page reads one page of students and only their
// grades; the averages are aggregated in the database.
//
// Assignments are the distinct names in the course's grades, in the order
// they were first graded. There is no assignments table: the schema stays
// as it is (expand-only migrations), and an older app version running side
// by side, which grades by free-text name, stays consistent with this one.

const (
	// gradebookPerPage is the number of students on a gradebook page.
	gradebookPerPage = 50
	// maxSearchLen bounds the gradebook's search text.
	maxSearchLen = 100
)

// AssignmentStat is one gradebook column: an assignment and its statistics
// over every enrolled student.
type AssignmentStat struct {
	Name    string  `json:"name"`
	Graded  int     `json:"graded"`
	Average float64 `json:"average"`
}

// GradebookCell is one student's score for one assignment.
type GradebookCell struct {
	Assignment string  `json:"assignment"`
	Score      float64 `json:"score"`
	// Has is false when the assignment is not graded yet.
	Has bool `json:"has"`
}

// GradebookRow is one student's line.
type GradebookRow struct {
	Student User            `json:"student"`
	Cells   []GradebookCell `json:"cells"`
	// Total is the sum of the student's scores.
	Total float64 `json:"total"`
	// Graded is how many assignments have a score.
	Graded int `json:"graded"`
	// Average is Total / Graded (0 when nothing is graded).
	Average float64 `json:"average"`
}

// GradebookSummary is the course-wide footer.
type GradebookSummary struct {
	// Students is the number of enrolled students.
	Students int `json:"students"`
	// AverageTotal is the mean of every student's total.
	AverageTotal float64 `json:"average_total"`
	// Average is the mean of the averages of students with a grade.
	Average float64 `json:"average"`
	// HasAverage is false when no student has a grade.
	HasAverage bool `json:"has_average"`
}

// Gradebook is one page (or, for the export, all) of a course's gradebook.
type Gradebook struct {
	Course      Course           `json:"course"`
	Assignments []AssignmentStat `json:"assignments"`
	Rows        []GradebookRow   `json:"rows"`
	Summary     GradebookSummary `json:"summary"`
	// Search is the search text as typed, trimmed ("" for everyone).
	Search string `json:"search"`
	// Matches is the number of students matching Search.
	Matches int `json:"matches"`
	// Page (from 1) of Pages, PerPage rows each (0: all rows).
	Page    int `json:"page"`
	Pages   int `json:"pages"`
	PerPage int `json:"per_page"`
	// First and Last are the 1-based positions of the rows shown.
	First int `json:"first"`
	Last  int `json:"last"`
}

// normSearch trims and bounds the search text. It is pure. The search is
// case-insensitive; the text keeps its case for the page to show it back.
func normSearch(q string) string {
	q = strings.TrimSpace(q)
	for len(q) > maxSearchLen {
		_, size := utf8.DecodeLastRuneInString(q)
		q = q[:len(q)-size]
	}
	return q
}

// clampPage parses a page number and keeps it within [1, pages]. It is pure.
func clampPage(s string, pages int) int {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 {
		p = 1
	}
	return min(p, max(pages, 1))
}

// pageWindow lists the page numbers to link to around cur: the first, the
// last, and two either side of cur, with 0 for a gap. It is pure.
func pageWindow(cur, pages int) []int {
	var out []int
	for p := 1; p <= pages; p++ {
		if p == 1 || p == pages || (p >= cur-2 && p <= cur+2) {
			out = append(out, p)
		} else if len(out) > 0 && out[len(out)-1] != 0 {
			out = append(out, 0)
		}
	}
	return out
}

type gradeRow struct {
	student    int64
	assignment string
	score      float64
}

// buildRows lays grades out as rows of cells in the order of assignments,
// with each student's total and average. It is pure.
func buildRows(students []User, assignments []AssignmentStat, grades []gradeRow) []GradebookRow {
	col := make(map[string]int, len(assignments))
	for i, a := range assignments {
		col[a.Name] = i
	}
	rows := make([]GradebookRow, len(students))
	at := make(map[int64]int, len(students))
	for i, st := range students {
		rows[i].Student = st
		rows[i].Cells = make([]GradebookCell, len(assignments))
		for j, a := range assignments {
			rows[i].Cells[j].Assignment = a.Name
		}
		at[st.ID] = i
	}
	for _, g := range grades {
		i, ok1 := at[g.student]
		j, ok2 := col[g.assignment]
		if !ok1 || !ok2 {
			continue
		}
		rows[i].Cells[j].Score, rows[i].Cells[j].Has = g.score, true
		rows[i].Total += g.score
		rows[i].Graded++
	}
	for i := range rows {
		if rows[i].Graded > 0 {
			rows[i].Average = rows[i].Total / float64(rows[i].Graded)
		}
	}
	return rows
}

// Gradebook returns page (from 1) of the course's gradebook for its
// teacher, with students whose name or email contains search; perPage 0
// returns every matching student (the CSV export). Anyone but the course's
// teacher gets ErrNotFound.
func (s *Store) Gradebook(ctx context.Context, teacher User, courseID int64, search string, page, perPage int) (Gradebook, error) {
	var gb Gradebook
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		gb = Gradebook{Search: search, PerPage: perPage}
		c := &gb.Course
		err := q.QueryRow(ctx, `SELECT c.id, c.code, c.title, c.description, t.name,
			(SELECT count(*) FROM enrolments e WHERE e.course_id = c.id)
			FROM courses c JOIN users t ON t.id = c.teacher_id
			WHERE c.id = $1 AND c.teacher_id = $2`, courseID, teacher.ID).
			Scan(&c.ID, &c.Code, &c.Title, &c.Description, &c.Teacher, &c.Students)
		if err != nil {
			return err
		}
		// Columns, with statistics over enrolled students only: a student
		// who left keeps their grades, but they no longer count here.
		rows, err := q.Query(ctx, `SELECT g.assignment, count(*), avg(g.score)::float8
			FROM grades g JOIN enrolments e ON e.course_id = g.course_id AND e.student_id = g.student_id
			WHERE g.course_id = $1
			GROUP BY g.assignment ORDER BY min(g.graded_at), g.assignment`, courseID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var a AssignmentStat
			if err := rows.Scan(&a.Name, &a.Graded, &a.Average); err != nil {
				return err
			}
			gb.Assignments = append(gb.Assignments, a)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		var avg *float64
		if err := q.QueryRow(ctx, `SELECT count(*), coalesce(avg(t.total), 0)::float8, avg(t.av)::float8 FROM (
				SELECT coalesce(sum(g.score), 0) AS total, avg(g.score) AS av
				FROM enrolments e LEFT JOIN grades g ON g.course_id = e.course_id AND g.student_id = e.student_id
				WHERE e.course_id = $1 GROUP BY e.student_id) t`, courseID).
			Scan(&gb.Summary.Students, &gb.Summary.AverageTotal, &avg); err != nil {
			return err
		}
		if avg != nil {
			gb.Summary.Average, gb.Summary.HasAverage = *avg, true
		}

		const match = `FROM enrolments e JOIN users u ON u.id = e.student_id
			WHERE e.course_id = $1 AND ($2 = '' OR strpos(lower(u.name), $2) > 0 OR strpos(u.email, $2) > 0)`
		needle := strings.ToLower(search)
		if err := q.QueryRow(ctx, `SELECT count(*) `+match, courseID, needle).Scan(&gb.Matches); err != nil {
			return err
		}
		limit, offset := gb.Matches, 0
		gb.Page, gb.Pages = 1, 1
		if perPage > 0 {
			gb.Pages = max(1, (gb.Matches+perPage-1)/perPage)
			gb.Page = min(max(page, 1), gb.Pages)
			limit, offset = perPage, (gb.Page-1)*perPage
		}
		rows, err = q.Query(ctx, `SELECT u.id, u.email, u.name, u.role `+match+`
			ORDER BY u.name, u.id LIMIT $3 OFFSET $4`, courseID, needle, limit, offset)
		if err != nil {
			return err
		}
		var students []User
		ids := []int64{}
		for rows.Next() {
			var u User
			if err := rows.Scan(&u.ID, &u.Email, &u.Name, &u.Role); err != nil {
				return err
			}
			students = append(students, u)
			ids = append(ids, u.ID)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = q.Query(ctx, `SELECT student_id, assignment, score::float8 FROM grades
			WHERE course_id = $1 AND student_id = ANY($2)`, courseID, ids)
		if err != nil {
			return err
		}
		var grades []gradeRow
		for rows.Next() {
			var g gradeRow
			if err := rows.Scan(&g.student, &g.assignment, &g.score); err != nil {
				return err
			}
			grades = append(grades, g)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		gb.Rows = buildRows(students, gb.Assignments, grades)
		if len(gb.Rows) > 0 {
			gb.First, gb.Last = offset+1, offset+len(gb.Rows)
		}
		return nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Gradebook{}, ErrNotFound
	}
	if err != nil {
		return Gradebook{}, fmt.Errorf("get gradebook of course %d: %w", courseID, err)
	}
	return gb, nil
}

// GradeCellView is one gradebook cell, for the edit form.
type GradeCellView struct {
	Course     Course
	Student    User
	Assignment string
	// Score is the current score, nil when not graded yet.
	Score *float64
}

// GradeCell returns one student's grade for one assignment, for the
// course's teacher; ErrNotFound for anyone else or a student not enrolled.
func (s *Store) GradeCell(ctx context.Context, teacher User, courseID, studentID int64, assignment string) (GradeCellView, error) {
	var v GradeCellView
	err := s.db.Read(ctx, func(ctx context.Context, q Querier) error {
		v = GradeCellView{Assignment: assignment}
		return q.QueryRow(ctx, `SELECT c.id, c.code, c.title, u.id, u.email, u.name, u.role, g.score::float8
			FROM courses c
			JOIN enrolments e ON e.course_id = c.id AND e.student_id = $3
			JOIN users u ON u.id = e.student_id
			LEFT JOIN grades g ON g.course_id = c.id AND g.student_id = u.id AND g.assignment = $4
			WHERE c.id = $1 AND c.teacher_id = $2`, courseID, teacher.ID, studentID, assignment).
			Scan(&v.Course.ID, &v.Course.Code, &v.Course.Title, &v.Student.ID, &v.Student.Email, &v.Student.Name, &v.Student.Role, &v.Score)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return GradeCellView{}, ErrNotFound
	}
	if err != nil {
		return GradeCellView{}, fmt.Errorf("get grade: %w", err)
	}
	return v, nil
}

// ---- CSV export ----

// csvSafe defuses a text cell a spreadsheet would run as a formula (CSV
// injection): a value starting with = + - @, a tab or a carriage return
// (or their full-width forms, which some spreadsheets also accept), even
// after leading spaces, gets a leading apostrophe, which spreadsheets show
// as text. OWASP's recommendation. It is pure. Numbers the app writes
// itself never go through it.
func csvSafe(s string) string {
	t := strings.TrimLeft(s, " \n")
	if t == "" {
		return s
	}
	r, _ := utf8.DecodeRuneInString(t)
	switch r {
	case '=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠':
		return "'" + s
	}
	return s
}

func fmtScore(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// writeGradebookCSV writes the gradebook as CSV: a header, then one line per
// student. It starts with a UTF-8 byte order mark so spreadsheets read the
// names' accents right.
func writeGradebookCSV(w io.Writer, gb Gradebook) error {
	if _, err := io.WriteString(w, "\uFEFF"); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	header := []string{"Name", "Email"}
	for _, a := range gb.Assignments {
		header = append(header, csvSafe(a.Name))
	}
	header = append(header, "Total", "Average", "Graded")
	if err := cw.Write(header); err != nil {
		return err
	}
	line := make([]string, 0, len(header))
	for _, r := range gb.Rows {
		line = append(line[:0], csvSafe(r.Student.Name), csvSafe(r.Student.Email))
		for _, c := range r.Cells {
			if c.Has {
				line = append(line, fmtScore(c.Score))
			} else {
				line = append(line, "")
			}
		}
		avg := ""
		if r.Graded > 0 {
			avg = strconv.FormatFloat(r.Average, 'f', 1, 64)
		}
		line = append(line, fmtScore(r.Total), avg, strconv.Itoa(r.Graded))
		if err := cw.Write(line); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvFilename is a safe download name for a course's export.
func csvFilename(code string) string {
	var b strings.Builder
	for _, r := range code {
		if r < 128 && (r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r|0x20 >= 'a' && r|0x20 <= 'z')) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return cmp.Or(b.String(), "course") + "-grades.csv"
}

// ---- handlers ----

// gradebookView is the gradebook page.
type gradebookView struct {
	Gradebook
	// Links are the page numbers to show (0: a gap).
	Links []int
	// Saved is the student whose grade was just saved (0: none).
	Saved int64
}

func (s *Server) gradebookPage(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok := pathID(r, "id")
	if !ok || !sess.User.IsTeacher() {
		s.dbError(w, r, ErrNotFound)
		return
	}
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	gb, err := s.store.Gradebook(r.Context(), sess.User, id, normSearch(q.Get("q")), page, gradebookPerPage)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	v := gradebookView{Gradebook: gb, Links: pageWindow(gb.Page, gb.Pages)}
	pd := pageData{Title: "Gradebook: " + gb.Course.Title, Nav: "courses"}
	if saved, err := strconv.ParseInt(q.Get("saved"), 10, 64); err == nil && saved > 0 {
		v.Saved = saved
		pd.Message = "Grade saved."
		for _, row := range gb.Rows {
			if row.Student.ID == saved {
				pd.Message = "Grade saved for " + row.Student.Name + "."
			}
		}
	}
	pd.Data = v
	s.render(w, r, http.StatusOK, "gradebook", pd)
}

func (s *Server) gradebookCSV(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok := pathID(r, "id")
	if !ok || !sess.User.IsTeacher() {
		s.dbError(w, r, ErrNotFound)
		return
	}
	gb, err := s.store.Gradebook(r.Context(), sess.User, id, normSearch(r.URL.Query().Get("q")), 1, 0)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	// Rendered in memory first, so a failure is an error page and never a
	// truncated file.
	var buf strings.Builder
	if err := writeGradebookCSV(&buf, gb); err != nil {
		s.dbError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+csvFilename(gb.Course.Code)+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	_, _ = io.WriteString(w, buf.String())
}

// gradeEditView is the edit form for one gradebook cell.
type gradeEditView struct {
	GradeCellView
	Form *form
	// Search and Page lead back to the gradebook page the teacher came from.
	Search string
	Page   int
}

// gradebookURL is the gradebook page for a search and page, with extra
// query parameters.
func gradebookURL(courseID int64, search string, page int, extra url.Values) string {
	q := url.Values{}
	if search != "" {
		q.Set("q", search)
	}
	if page > 1 {
		q.Set("page", strconv.Itoa(page))
	}
	for k, vs := range extra {
		q[k] = vs
	}
	u := fmt.Sprintf("/courses/%d/gradebook", courseID)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// cellParams reads the student, assignment, search and page of an edit
// request, from the query (GET) or the form (POST).
func cellParams(r *http.Request) (studentID int64, assignment, search string, page int, ok bool) {
	get := r.FormValue
	studentID, err := strconv.ParseInt(get("student"), 10, 64)
	assignment = strings.TrimSpace(get("assignment"))
	page, _ = strconv.Atoi(get("page"))
	return studentID, assignment, normSearch(get("q")), max(page, 1),
		err == nil && studentID > 0 && assignment != "" && len(assignment) <= 100
}

func (s *Server) gradeEditPage(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok := pathID(r, "id")
	student, assignment, search, page, ok2 := cellParams(r)
	if !ok || !ok2 || !sess.User.IsTeacher() {
		s.dbError(w, r, ErrNotFound)
		return
	}
	f := newForm()
	s.renderGradeEdit(w, r, sess, id, student, assignment, search, page, http.StatusOK, f)
}

func (s *Server) renderGradeEdit(w http.ResponseWriter, r *http.Request, sess Session, courseID, student int64, assignment, search string, page, status int, f *form) {
	cell, err := s.store.GradeCell(r.Context(), sess.User, courseID, student, assignment)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	if _, set := f.Values["score"]; !set && cell.Score != nil {
		f.Set("score", fmtScore(*cell.Score))
	}
	s.render(w, r, status, "grade_edit", pageData{Title: "Edit grade: " + assignment + " for " + cell.Student.Name, Nav: "courses",
		Data: gradeEditView{GradeCellView: cell, Form: f, Search: search, Page: page}})
}

func (s *Server) gradeEditSubmit(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok := pathID(r, "id")
	student, assignment, search, page, ok2 := cellParams(r)
	if !ok || !ok2 || !sess.User.IsTeacher() {
		s.dbError(w, r, ErrNotFound)
		return
	}
	f := newForm()
	raw := r.PostFormValue("score")
	f.Set("score", raw)
	score, valid := parseScore(raw)
	if !valid {
		f.Fail("score", msgGradeScore)
		s.renderGradeEdit(w, r, sess, id, student, assignment, search, page, http.StatusUnprocessableEntity, f)
		return
	}
	err := s.store.PostGrade(r.Context(), sess.User, id, studentRef{ID: student}, assignment, score)
	switch {
	case errors.Is(err, ErrNotEnrolled), errors.Is(err, ErrNotFound):
		s.dbError(w, r, ErrNotFound)
	case err != nil:
		s.dbError(w, r, err)
	default:
		target := gradebookURL(id, search, page, url.Values{"saved": {strconv.FormatInt(student, 10)}})
		http.Redirect(w, r, target+fmt.Sprintf("#s-%d", student), http.StatusSeeOther)
	}
}
