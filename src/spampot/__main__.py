from spampot.cli import main

main()
