// Trigger sync
const triggerSync = async () => {
  const response = await fetch('/admin/sync/trigger', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'Authorization': `Bearer ${token}`
    }
  })
  
  const data = await response.json()
  
  if (data.status === 'success') {
    console.log('Sync started at:', data.data.startedAt)
    // Start polling for status
    pollStatus()
  } else {
    console.error('Failed to start sync:', data.message)
  }
}

// Poll status
const pollStatus = async () => {
  const interval = setInterval(async () => {
    const response = await fetch('/admin/sync/status', {
      headers: {
        'Authorization': `Bearer ${token}`
      }
    })
    
    const data = await response.json()
    
    if (!data.data.isRunning) {
      clearInterval(interval)
      
      if (data.data.lastStatus === 'success') {
        console.log('Sync completed successfully!')
        console.log('Created:', data.data.stats.created)
        console.log('Updated:', data.data.stats.updated)
      } else {
        console.error('Sync failed:', data.data.lastError)
      }
    } else {
      console.log('Sync still running...')
    }
  }, 2000) // Poll every 2 seconds
}
