  const triggerSync = async () => {
    setLoading(true)
    
    const response = await fetch('/admin/sync/trigger', {
      method: 'POST'
    })
    
    const data = await response.json()
    
    if (data.status === 'success') {
      // Start polling
      const interval = setInterval(async () => {
        const statusRes = await fetch('/admin/sync/status')
        const statusData = await statusRes.json()
        
        setStatus(statusData.data)
        
        if (!statusData.data.isRunning) {
          clearInterval(interval)
          setLoading(false)
        }
      }, 2000)
    }
  }
