module fixture/01-one

go 1.26
