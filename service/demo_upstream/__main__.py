from service.demo_upstream.server import main

raise SystemExit(main())
