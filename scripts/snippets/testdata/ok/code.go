package code

// Greet says hello.
func Greet(name string) string {
	return "hello, " + name
}

// Part is shown whole.
const Part = 1
