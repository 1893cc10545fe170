module realtime/01-one

go 1.26.0
