from alumon.cli import main

main()
