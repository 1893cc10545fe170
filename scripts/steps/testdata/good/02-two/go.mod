module realtime/02-two

go 1.26.0
