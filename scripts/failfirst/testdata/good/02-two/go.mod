module fixture/02-two

go 1.26
