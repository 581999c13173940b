// Package courses is the drill workload of the sample course app (cmd/courses): seeded students log in, then walk dashboard, course page and material download, visiting popular courses more (Zipf).
package courses

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"

	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/load"
)

// DefaultPassword is the seed's demo password (`courses seed --password`).
const DefaultPassword = "exam-week-2026"

// Workload is the course app's workload. The zero value uses the seed's
// demo password.
type Workload struct {
	// Password is the seeded students' password. Default DefaultPassword.
	Password string
}

var (
	_ drill.Workload     = Workload{}
	_ drill.FetchCounter = Workload{}
)

// Name is "courses".
func (Workload) Name() string { return "courses" }

// Email is virtual user n's seeded address.
func Email(n int) string { return fmt.Sprintf("student%d@example.edu", n) }

// Login logs seeded student n in through the JSON API and learns their
// courses and materials.
func (w Workload) Login(ctx context.Context, c *drill.Client, n int) (drill.Journey, error) {
	pw := w.Password
	if pw == "" {
		pw = DefaultPassword
	}
	email := Email(n)
	body, _ := json.Marshal(map[string]string{"email": email, "password": pw})
	resp, _, err := c.Do(ctx, drill.Request{Method: http.MethodPost, Path: "/api/login", Body: body})
	if err != nil {
		return nil, fmt.Errorf("log in %s: %w", email, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("log in %s: %s (is the region seeded? the seed's demo password is printed by `courses seed`)", email, resp.Status)
	}
	var courses []struct {
		ID int64 `json:"id"`
	}
	if err := getJSON(ctx, c, "/api/courses", &courses, "courses"); err != nil {
		return nil, err
	}
	j := &journey{mats: map[int64][]int64{}}
	students := map[int64]int{}
	for _, co := range courses {
		j.courses = append(j.courses, co.ID)
		var detail struct {
			Course struct {
				Students int `json:"students"`
			} `json:"course"`
			Materials []struct {
				ID int64 `json:"id"`
			} `json:"materials"`
		}
		if err := getJSON(ctx, c, fmt.Sprintf("/api/courses/%d", co.ID), &detail, ""); err != nil {
			return nil, err
		}
		students[co.ID] = detail.Course.Students
		for _, m := range detail.Materials {
			j.mats[co.ID] = append(j.mats[co.ID], m.ID)
		}
	}
	if len(j.courses) == 0 {
		return nil, fmt.Errorf("log in %s: the user has no courses; seed the region first", email)
	}
	// Most-enrolled first: rank 0 is the user's most popular course.
	sort.SliceStable(j.courses, func(a, b int) bool {
		ca, cb := j.courses[a], j.courses[b]
		if students[ca] != students[cb] {
			return students[ca] > students[cb]
		}
		return ca < cb
	})
	z, err := load.NewZipf(len(j.courses), ZipfExponent, uint64(n))
	if err != nil {
		return nil, fmt.Errorf("log in %s: %w", email, err)
	}
	j.pick = z
	return j, nil
}

// ZipfExponent is the popularity skew of a user's visits over their
// courses: with s = 1.2 and five courses the most-enrolled one gets about
// 44 % of the visits and the fifth about 7 %.
const ZipfExponent = 1.2

// Check counts a transport error or any status but 200 as a failure.
func (Workload) Check(_ drill.Request, resp *http.Response, _ []byte, err error) error {
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// CountFetches counts the app's "fetched database credentials" log lines.
func (Workload) CountFetches(log io.Reader) int {
	n := 0
	sc := bufio.NewScanner(log)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "fetched database credentials" {
			n++
		}
	}
	return n
}

// journey walks dashboard, course page, material download (or grades when
// a course has no material): one visit, then the next. Each visit's course
// is drawn with Zipf popularity over the user's courses, most-enrolled first.
type journey struct {
	courses []int64           // most-enrolled first
	mats    map[int64][]int64 // course → material ids
	pick    *load.Zipf
	step    int
	course  int64 // the current visit's course
}

func (j *journey) Next() drill.Request {
	n := j.step
	j.step++
	switch n % 3 {
	case 0:
		j.course = j.courses[j.pick.Next()]
		return drill.Request{Path: "/courses"}
	case 1:
		return drill.Request{Path: fmt.Sprintf("/courses/%d", j.course)}
	}
	if ms := j.mats[j.course]; len(ms) > 0 {
		return drill.Request{Path: fmt.Sprintf("/courses/%d/materials/%d/download", j.course, ms[n/3%len(ms)])}
	}
	return drill.Request{Path: "/grades"}
}

// getJSON fetches path; when key is set and the body is an object, the
// value under key is decoded instead of the whole body.
func getJSON(ctx context.Context, c *drill.Client, path string, v any, key string) error {
	resp, data, err := c.Do(ctx, drill.Request{Path: path})
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", path, resp.Status)
	}
	if key != "" && len(data) > 0 && data[0] == '{' {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil {
			return err
		}
		data = obj[key]
	}
	if len(data) == 0 {
		return errors.New("get " + path + ": empty answer")
	}
	return json.Unmarshal(data, v)
}

// BadBuild returns the environment that makes a bad build of the courses
// app for haven drill bad-deploy: COURSES_FAULT (crash, unhealthy, errors,
// slow; see cmd/courses/fault.go).
func (Workload) BadBuild(kind string) (map[string]string, error) {
	switch kind {
	case "crash", "unhealthy", "errors", "slow":
		return map[string]string{"COURSES_FAULT": kind}, nil
	}
	return nil, fmt.Errorf("no bad build of kind %q: crash, unhealthy, errors or slow", kind)
}
