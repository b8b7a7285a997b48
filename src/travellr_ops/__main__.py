from travellr_ops.cli.app import main

main()
