from liandan.cli import main

main()
