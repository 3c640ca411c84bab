from ops.bench.cli import main

main()
