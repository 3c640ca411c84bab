from ops.soak.cli import main

main()
