from caffegen.cli import main

main()
