"""chat_server"""
