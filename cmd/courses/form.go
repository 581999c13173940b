package main

// form is a submitted HTML form: the values as the user typed them, so a
// rejected form shows them again, and at most one error per field, shown
// next to that field. Templates read it with Get, Err and Focus.
type form struct {
	// Values are the submitted values by field name.
	Values map[string]string
	// Errors are the error messages by field name.
	Errors map[string]string
	order  []string
}

func newForm() *form {
	return &form{Values: map[string]string{}, Errors: map[string]string{}}
}

// Set records a submitted value.
func (f *form) Set(name, value string) { f.Values[name] = value }

// Get returns a submitted value ("" when none).
func (f *form) Get(name string) string { return f.Values[name] }

// Fail records an error for a field; the first one recorded wins.
func (f *form) Fail(name, msg string) {
	if _, dup := f.Errors[name]; dup {
		return
	}
	f.Errors[name] = msg
	f.order = append(f.order, name)
}

// Err returns the field's error message ("" when valid).
func (f *form) Err(name string) string { return f.Errors[name] }

// OK reports whether no field failed.
func (f *form) OK() bool { return len(f.Errors) == 0 }

// Focus is the field that failed first: the page puts the cursor there, so
// the browser scrolls to the error instead of leaving it off-screen.
func (f *form) Focus() string {
	if len(f.order) == 0 {
		return ""
	}
	return f.order[0]
}
